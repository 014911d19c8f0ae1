package node3

// GPU is one accelerator a provider can offer.
type GPU struct {
	Index       int    `json:"index"`
	UUID        string `json:"uuid,omitempty"`
	Vendor      string `json:"vendor"` // "NVIDIA", "AMD", "Apple", "Demo"
	Model       string `json:"model"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Driver      string `json:"driver,omitempty"`
	Simulated   bool   `json:"simulated,omitempty"` // SKIP_GPU_CHECK demo GPUs
}

// GPUMetrics is one live sample of a GPU's use.
type GPUMetrics struct {
	Index          int     `json:"index"`
	UtilizationPct float64 `json:"utilization_pct"`
	MemoryUsed     uint64  `json:"memory_used_bytes"`
	TemperatureC   float64 `json:"temperature_c"`
	PowerW         float64 `json:"power_w"`
}
