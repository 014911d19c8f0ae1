// Package gpu finds a provider's GPUs and samples how busy they are.
//
// A Detector is built from a Config and answers two questions:
//
//	d := gpu.New(gpu.Config{Logger: log})
//	gpus, err := d.Detect(ctx)    // what this machine can offer; (nil, nil) when it has none
//	live, err := d.Metrics(ctx)   // one sample of utilisation, memory, temperature and power
//
// Real GPUs are found through backends tried in order (see backend in
// gpu.go). This build has one: the nvidia-smi command line tool, whose CSV
// output is parsed by parseNvidiaSMI and parseNvidiaSMIMetrics. Those
// parsers treat the tool's output as untrusted input: they are bounded (at
// most 64 GPUs, short lines, short fields, sane ranges) and fuzzed. An NVML
// backend (go-nvml, behind a cgo build tag) slots in ahead of nvidia-smi;
// nvml.go marks the place.
//
// A machine without the vendor tool simply has no GPUs: Detect returns
// (nil, nil). A tool that is present but fails is an error, so that an
// operator with a broken driver hears about it.
//
// With Config.Simulate (SKIP_GPU_CHECK) the Detector reports demo GPUs
// instead: Config.Simulated, or SimulatedPreset(0) when that is empty.
// Their metrics are computed from the clock, so they vary slowly and
// plausibly without any state. SimulatedPreset(i) gives the i-th of a
// small cycle of demo machines, so that `node3 up` can start providers
// that each look different.
//
// The package holds no mutable package-level state; a Detector is safe
// for concurrent use.
package gpu
