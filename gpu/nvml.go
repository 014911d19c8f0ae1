package gpu

import "log/slog"

// NVML backend: the slot.
//
// Real NVIDIA detection moves to NVML (github.com/NVIDIA/go-nvml) in a
// later issue. go-nvml is cgo-only (it dlopens libnvidia-ml at run time),
// so it arrives as a file nvml_cgo.go with the build constraint
// `//go:build cgo` that defines newNVMLBackend returning a backend (see
// gpu.go) built on nvml.Init, DeviceGetCount, DeviceGetHandleByIndex,
// GetUUID/GetName/GetMemoryInfo, SystemGetDriverVersion for detect and
// GetUtilizationRates/GetMemoryInfo/GetTemperature/GetPowerUsage for
// metrics; it returns (nil, nil) when nvml.Init reports
// ERROR_LIBRARY_NOT_FOUND. This file then gets `//go:build !cgo` and stays
// the stub. New puts the NVML backend ahead of nvidia-smi, which remains
// the fallback.

// newNVMLBackend returns the NVML backend, or nil when this build has
// none (it has none yet).
func newNVMLBackend(log *slog.Logger) backend {
	_ = log
	return nil
}
