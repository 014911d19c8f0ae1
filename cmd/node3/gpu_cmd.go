package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/node3/node3/gpu"
)

func showGPUs(cmd *cobra.Command, simulate bool) error {
	d := gpu.New(gpu.Config{Simulate: simulate})
	gpus, err := d.Detect(cmd.Context())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if len(gpus) == 0 {
		fmt.Fprintln(out, "No GPU found. Set SKIP_GPU_CHECK=true for demo mode with a simulated GPU.")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tVENDOR\tMODEL\tMEMORY\tUUID\tSIMULATED")
	for _, g := range gpus {
		fmt.Fprintf(w, "%d\t%s\t%s\t%.1f GiB\t%s\t%v\n", g.Index, g.Vendor, g.Model, float64(g.MemoryBytes)/(1<<30), g.UUID, g.Simulated)
	}
	return w.Flush()
}
