package schedule

import (
	"fmt"
	"testing"

	"github.com/node3/node3"
)

// FuzzConnect feeds announcements as a stream decoder would hand them
// over: a refused one changes nothing, an accepted one is within bounds,
// and either way Assign keeps its books.
func FuzzConnect(f *testing.F) {
	f.Add("p", 1, 0, uint64(80*gib), "NVIDIA", "A100", uint64(0), false)
	f.Add("p", MaxSlots+1, 0, uint64(0), "", "", uint64(0), false)
	f.Add("", 1, 0, uint64(0), "", "", uint64(0), false)
	f.Add("p", 0, MaxGPUs+1, uint64(gib), "AMD", "MI300X", uint64(5), false)
	f.Add("p", -1, 2, uint64(gib), "x", "y", uint64(node3.MaxReward)+1, true)
	f.Fuzz(func(t *testing.T, id string, slots, ngpu int, mem uint64, vendor, model string, floor uint64, dupUUID bool) {
		if ngpu < 0 || ngpu > 4*MaxGPUs {
			ngpu %= 4 * MaxGPUs
			if ngpu < 0 {
				ngpu = -ngpu
			}
		}
		c := Capacity{Slots: slots, PriceFloor: node3.Lamports(floor)}
		for i := range ngpu {
			u := fmt.Sprintf("gpu-%d", i)
			if dupUUID {
				u = "gpu"
			}
			c.GPUs = append(c.GPUs, node3.GPU{Index: i, UUID: u, Vendor: vendor, Model: model, MemoryBytes: mem})
		}
		w := newWorld(t, Config{})
		w.add(mkJob("j1", 1000, node3.Requirements{}), mkJob("j2", 1000, node3.Requirements{GPU: true, GPUVendor: vendor}))
		err := w.s.Connect(id, c)
		if err != nil {
			if node3.ErrorCode(err) != node3.CodeInvalid {
				t.Fatalf("Connect = %v, want an invalid-input error", err)
			}
			if w.s.Providers() != 0 || len(w.s.Assign(w.now)) != 0 {
				t.Fatal("a refused announcement changed the scheduler")
			}
			return
		}
		if slots < 0 || slots > MaxSlots || ngpu > MaxGPUs || id == "" || len(id) > MaxIDBytes {
			t.Fatalf("accepted an announcement out of bounds: id %d bytes, %d slots, %d GPUs", len(id), slots, ngpu)
		}
		for _, g := range w.assign() {
			if g.Provider != id {
				t.Fatalf("granted to %q", g.Provider)
			}
		}
		n, free, _ := w.s.Free(id)
		if n < 0 || n > slots || len(free) > ngpu {
			t.Fatalf("free %d slots, %d GPUs of %d, %d", n, len(free), slots, ngpu)
		}
	})
}
