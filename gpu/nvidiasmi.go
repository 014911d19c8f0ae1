package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/node3/node3"
)

// nvidia-smi queries. memory.* are in MiB with nounits.
const (
	smiTool         = "nvidia-smi"
	smiQueryGPUs    = "--query-gpu=index,uuid,name,memory.total,driver_version"
	smiQueryMetrics = "--query-gpu=index,utilization.gpu,memory.used,temperature.gpu,power.draw"
	smiFormat       = "--format=csv,noheader,nounits"
	smiNoDevices    = "No devices were found"
)

// Bounds on what the parsers accept from a tool.
const (
	maxGPUs        = node3.MaxGPUCount // GPUs per machine
	maxToolOutput  = 64 << 10          // bytes of tool output
	maxLineBytes   = 1024              // bytes per line
	maxFieldBytes  = 256               // bytes per text field (name, uuid, driver)
	maxIndex       = 1023              // highest GPU index
	maxMemoryMiB   = 1 << 24           // 16 TiB per GPU
	maxNumberBytes = 32                // characters in a number
	maxTempC       = 1000.0            // °C
	maxPowerW      = 100000.0          // W
)

// toolTimeout bounds one run of a vendor tool by the default RunTool.
const toolTimeout = 5 * time.Second

// nvidiaSMI is the backend that runs the nvidia-smi tool.
type nvidiaSMI struct {
	run func(ctx context.Context, argv ...string) ([]byte, error)
	log *slog.Logger
}

func (b *nvidiaSMI) name() string { return smiTool }

// query runs nvidia-smi with q. absent is true when the tool is not
// installed or reports that it sees no device.
func (b *nvidiaSMI) query(ctx context.Context, q string) (out []byte, absent bool, err error) {
	out, err = b.run(ctx, smiTool, q, smiFormat)
	if errors.Is(err, exec.ErrNotFound) {
		b.log.Debug("nvidia-smi not found; no NVIDIA GPUs")
		return nil, true, nil
	}
	if bytes.Contains(out, []byte(smiNoDevices)) {
		b.log.Debug("nvidia-smi found no devices")
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	return out, false, nil
}

func (b *nvidiaSMI) detect(ctx context.Context) ([]node3.GPU, error) {
	out, absent, err := b.query(ctx, smiQueryGPUs)
	if absent || err != nil {
		return nil, err
	}
	return parseNvidiaSMI(out)
}

func (b *nvidiaSMI) metrics(ctx context.Context) ([]node3.GPUMetrics, error) {
	out, absent, err := b.query(ctx, smiQueryMetrics)
	if absent || err != nil {
		return nil, err
	}
	return parseNvidiaSMIMetrics(out)
}

// parseNvidiaSMI parses the output of
// `nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version --format=csv,noheader,nounits`,
// one GPU per line:
//
//	0, GPU-5c1f1f0e-…, NVIDIA GeForce RTX 4090, 24564, 550.54.14
//
// A name may contain commas (the fields around it are fixed). "[N/A]"
// style fields become empty (or 0 for memory). "No devices were found"
// and empty output mean no GPU: (nil, nil). Anything malformed, over 64
// GPUs or over the size limits is an error.
func parseNvidiaSMI(out []byte) ([]node3.GPU, error) {
	lines, err := toolLines(out)
	if err != nil || lines == nil {
		return nil, err
	}
	gpus := make([]node3.GPU, 0, len(lines))
	seen := make(map[int]bool, len(lines))
	for _, l := range lines {
		f := strings.Split(l.text, ",")
		if len(f) < 5 {
			return nil, fmt.Errorf("nvidia-smi line %d: %d fields, want 5", l.no, len(f))
		}
		idx, err := parseIndex(f[0])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: index: %w", l.no, err)
		}
		if seen[idx] {
			return nil, fmt.Errorf("nvidia-smi line %d: duplicate GPU index %d", l.no, idx)
		}
		seen[idx] = true
		uuid, err := textField(f[1])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: uuid: %w", l.no, err)
		}
		name, err := textField(strings.Join(f[2:len(f)-2], ","))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: name: %w", l.no, err)
		}
		if name == "" {
			return nil, fmt.Errorf("nvidia-smi line %d: empty GPU name", l.no)
		}
		mib, err := parseMiB(f[len(f)-2])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: memory.total: %w", l.no, err)
		}
		driver, err := textField(f[len(f)-1])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: driver_version: %w", l.no, err)
		}
		gpus = append(gpus, node3.GPU{
			Index:       idx,
			UUID:        uuid,
			Vendor:      "NVIDIA",
			Model:       name,
			MemoryBytes: mib << 20,
			Driver:      driver,
		})
	}
	return gpus, nil
}

// parseNvidiaSMIMetrics parses the output of
// `nvidia-smi --query-gpu=index,utilization.gpu,memory.used,temperature.gpu,power.draw --format=csv,noheader,nounits`,
// one GPU per line:
//
//	0, 35, 1234, 45, 120.50
//
// "[N/A]" and "[Not Supported]" fields become 0. Values out of range
// (utilisation above 100 %, NaN, negative power, …) are errors.
func parseNvidiaSMIMetrics(out []byte) ([]node3.GPUMetrics, error) {
	lines, err := toolLines(out)
	if err != nil || lines == nil {
		return nil, err
	}
	ms := make([]node3.GPUMetrics, 0, len(lines))
	seen := make(map[int]bool, len(lines))
	for _, l := range lines {
		f := strings.Split(l.text, ",")
		if len(f) != 5 {
			return nil, fmt.Errorf("nvidia-smi line %d: %d fields, want 5", l.no, len(f))
		}
		idx, err := parseIndex(f[0])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: index: %w", l.no, err)
		}
		if seen[idx] {
			return nil, fmt.Errorf("nvidia-smi line %d: duplicate GPU index %d", l.no, idx)
		}
		seen[idx] = true
		util, err := parseNumber(f[1], 0, 100)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: utilization.gpu: %w", l.no, err)
		}
		mib, err := parseMiB(f[2])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: memory.used: %w", l.no, err)
		}
		temp, err := parseNumber(f[3], -maxTempC, maxTempC)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: temperature.gpu: %w", l.no, err)
		}
		power, err := parseNumber(f[4], 0, maxPowerW)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: power.draw: %w", l.no, err)
		}
		ms = append(ms, node3.GPUMetrics{
			Index:          idx,
			UtilizationPct: util,
			MemoryUsed:     mib << 20,
			TemperatureC:   temp,
			PowerW:         power,
		})
	}
	return ms, nil
}

// toolLine is one non-empty line of tool output and its 1-based number.
type toolLine struct {
	no   int
	text string
}

// toolLines splits tool output into trimmed non-empty lines, enforcing the
// size bounds. It returns (nil, nil) for empty output or the "No devices
// were found" message.
func toolLines(out []byte) ([]toolLine, error) {
	if len(out) > maxToolOutput {
		return nil, fmt.Errorf("tool output is %d bytes, over the %d-byte limit", len(out), maxToolOutput)
	}
	if bytes.Contains(out, []byte(smiNoDevices)) {
		return nil, nil
	}
	var lines []toolLine
	for i, raw := range strings.Split(string(out), "\n") {
		if len(raw) > maxLineBytes {
			return nil, fmt.Errorf("line %d is longer than %d bytes", i+1, maxLineBytes)
		}
		t := strings.TrimSpace(raw)
		if t == "" {
			continue
		}
		if !utf8.ValidString(t) {
			return nil, fmt.Errorf("line %d is not valid UTF-8", i+1)
		}
		if len(lines) == maxGPUs {
			return nil, fmt.Errorf("more than %d GPUs listed", maxGPUs)
		}
		lines = append(lines, toolLine{no: i + 1, text: t})
	}
	return lines, nil
}

// notAvailable reports whether a field is nvidia-smi's way of saying it
// has no value: "[N/A]", "[Not Supported]", "N/A", "[Unknown Error]", ….
func notAvailable(s string) bool {
	return s == "N/A" || (len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']')
}

// textField trims a text field, maps "[N/A]" to "" and rejects control
// characters and overlong values.
func textField(s string) (string, error) {
	s = strings.TrimSpace(s)
	if notAvailable(s) {
		return "", nil
	}
	if len(s) > maxFieldBytes {
		return "", fmt.Errorf("longer than %d bytes", maxFieldBytes)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return "", fmt.Errorf("contains control or invalid characters")
		}
	}
	return s, nil
}

func parseIndex(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 4 || !allDigits(s) {
		return 0, fmt.Errorf("not a GPU index")
	}
	n, _ := strconv.Atoi(s)
	if n > maxIndex {
		return 0, fmt.Errorf("GPU index %d above %d", n, maxIndex)
	}
	return n, nil
}

// parseMiB parses a whole number of MiB; "[N/A]" is 0.
func parseMiB(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if notAvailable(s) {
		return 0, nil
	}
	if s == "" || len(s) > maxNumberBytes || !allDigits(s) {
		return 0, fmt.Errorf("not a whole number of MiB")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxMemoryMiB {
		return 0, fmt.Errorf("more than %d MiB", maxMemoryMiB)
	}
	return n, nil
}

// parseNumber parses a plain decimal (digits, one optional point, an
// optional leading minus when lo < 0) within [lo, hi]; "[N/A]" is 0.
func parseNumber(s string, lo, hi float64) (float64, error) {
	s = strings.TrimSpace(s)
	if notAvailable(s) {
		return 0, nil
	}
	digits := s
	if lo < 0 && strings.HasPrefix(digits, "-") {
		digits = digits[1:]
	}
	whole, frac, dot := strings.Cut(digits, ".")
	if len(s) > maxNumberBytes || whole == "" || !allDigits(whole) || (dot && (frac == "" || !allDigits(frac))) {
		return 0, fmt.Errorf("not a decimal number")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < lo || v > hi {
		return 0, fmt.Errorf("out of range [%g, %g]", lo, hi)
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// runTool is the default Config.RunTool: os/exec with a timeout, stdout
// kept up to just over maxToolOutput (so the parsers see and reject an
// oversized answer), stderr kept short for the error message.
func runTool(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("no tool to run")
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	stdout := &capBuffer{max: maxToolOutput + 1}
	stderr := &capBuffer{max: 512}
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		if msg := strings.TrimSpace(stderr.buf.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
	}
	return stdout.buf.Bytes(), err
}

// capBuffer keeps the first max bytes written and drops the rest, so a
// chatty tool can neither block nor exhaust memory.
type capBuffer struct {
	buf bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
