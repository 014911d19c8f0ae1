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

// Capacity is what a provider can start right now: slots for jobs that
// need no GPU, and which of its GPUs (by Index) are idle.
type Capacity struct {
	Slots int   `json:"free_slots"`
	GPUs  []int `json:"free_gpus,omitempty"`
}

// Fitter hands out a provider's free capacity job by job, so that one
// batch of offers never promises the same slot or GPU twice.
type Fitter struct {
	slots int
	free  []GPU
}

// NewFitter returns a Fitter over the given GPUs. With c nil every GPU and
// slots CPU slots count as free.
func NewFitter(gpus []GPU, c *Capacity, slots int) *Fitter {
	f := &Fitter{slots: slots}
	if c == nil {
		f.free = append(f.free, gpus...)
		return f
	}
	f.slots = c.Slots
	for _, g := range gpus {
		for _, i := range c.GPUs {
			if g.Index == i {
				f.free = append(f.free, g)
				break
			}
		}
	}
	return f
}

// Take reserves what r needs and reports whether it fitted.
func (f *Fitter) Take(r Requirements) bool {
	need := r.Count()
	if need == 0 {
		if f.slots <= 0 {
			return false
		}
		f.slots--
		return true
	}
	var pick []int
	for i, g := range f.free {
		if r.Fits(g) {
			pick = append(pick, i)
			if len(pick) == need {
				break
			}
		}
	}
	if len(pick) < need {
		return false
	}
	for k := len(pick) - 1; k >= 0; k-- {
		i := pick[k]
		f.free = append(f.free[:i], f.free[i+1:]...)
	}
	return true
}
