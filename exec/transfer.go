package exec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/node3/node3"
)

// maxErrorBody is how much of a response body is read (and discarded)
// before closing it.
const maxErrorBody = 64 << 10

// download fetches the job's input into the workspace, enforcing the
// input cap and the expected sha256. On success w.input is its path.
func (n *Native) download(ctx context.Context, w *workspace) error {
	job := w.job
	want := strings.ToLower(job.InputSHA256)
	if want != "" && !isSHA256Hex(want) {
		return node3.Errorf(node3.CodeInvalid, "input_sha256 must be 64 hex digits")
	}
	where := redactURL(job.InputURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, job.InputURL, nil)
	if err != nil {
		return node3.Errorf(node3.CodeInvalid, "input URL %s is not usable", where)
	}
	req.Header.Set("User-Agent", "node3-exec")
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("downloading input from %s: %w", where, redactErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return fmt.Errorf("downloading input from %s: server answered %s", where, resp.Status)
	}
	if resp.ContentLength > n.maxIn {
		return node3.Errorf(node3.CodeTooLarge, "input from %s is %d bytes, over the %d-byte limit", where, resp.ContentLength, n.maxIn)
	}
	path := filepath.Join(w.dir, "input")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating input file: %w", err)
	}
	h := sha256.New()
	got, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, n.maxIn+1))
	if cerr := f.Close(); err == nil && cerr != nil {
		return fmt.Errorf("writing input file: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("downloading input from %s: %w", where, redactErr(err))
	}
	if got > n.maxIn {
		return node3.Errorf(node3.CodeTooLarge, "input from %s is over the %d-byte limit", where, n.maxIn)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); want != "" && sum != want {
		return node3.Errorf(node3.CodeInvalid, "input checksum mismatch: got sha256 %s, want %s", sum, want)
	}
	w.input = path
	return nil
}

// upload PUTs the job's result to its output URL and returns the sha256
// of what was sent: the file at $NODE3_OUTPUT if the job wrote one, else
// its captured stdout (commands) or output text (built-in kinds).
func (n *Native) upload(ctx context.Context, w *workspace, out outcome) (string, error) {
	where := redactURL(w.job.OutputURL)
	open, size, err := n.outputBody(w, out)
	if err != nil {
		return "", err
	}
	// Hash first, then send: the sum is of exactly the bytes offered,
	// whatever the server does with them.
	sum, err := hashBody(open, size)
	if err != nil {
		return "", err
	}
	body, err := open()
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, w.job.OutputURL, body)
	if err != nil {
		body.Close()
		return "", node3.Errorf(node3.CodeInvalid, "output URL %s is not usable", where)
	}
	req.ContentLength = size
	req.GetBody = open // lets the client resend on a 307/308 redirect
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", "node3-exec")
	resp, err := n.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("uploading output to %s: %w", where, redactErr(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("uploading output to %s: server answered %s", where, resp.Status)
	}
	return sum, nil
}

// outputBody chooses what to upload and returns a way to (re)open it and
// its size, after checking it against the output cap.
func (n *Native) outputBody(w *workspace, out outcome) (func() (io.ReadCloser, error), int64, error) {
	fi, err := os.Lstat(w.output)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return nil, 0, node3.Errorf(node3.CodeInvalid, "the job's output ($NODE3_OUTPUT) is not a regular file")
		}
		if fi.Size() > n.maxOut {
			return nil, 0, node3.Errorf(node3.CodeTooLarge, "the job's output is %d bytes, over the %d-byte limit", fi.Size(), n.maxOut)
		}
		return openFile(w.output, fi), fi.Size(), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, 0, fmt.Errorf("checking the job's output file: %w", err)
	}
	if out.stdout != nil {
		if out.stdout.over {
			return nil, 0, node3.Errorf(node3.CodeTooLarge, "the job's stdout is over the %d-byte output limit", n.maxOut)
		}
		if out.stdout.err != nil {
			return nil, 0, fmt.Errorf("saving the job's stdout: %w", out.stdout.err)
		}
		fi, err := os.Lstat(w.stdout)
		if err != nil {
			return nil, 0, fmt.Errorf("checking the job's stdout file: %w", err)
		}
		return openFile(w.stdout, fi), fi.Size(), nil
	}
	if int64(len(out.output)) > n.maxOut {
		return nil, 0, node3.Errorf(node3.CodeTooLarge, "the job's output is over the %d-byte limit", n.maxOut)
	}
	s := out.output
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }, int64(len(s)), nil
}

// openFile opens path for reading, refusing it if it is no longer the file
// fi described (replaced, say, by a link to something else), and reads at
// most fi.Size() bytes.
func openFile(path string, fi os.FileInfo) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("opening the job's output: %w", err)
		}
		now, err := f.Stat()
		if err != nil || !os.SameFile(fi, now) {
			f.Close()
			return nil, node3.Errorf(node3.CodeInvalid, "the job's output file changed during upload")
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, fi.Size()), f}, nil
	}
}

func hashBody(open func() (io.ReadCloser, error), size int64) (string, error) {
	r, err := open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", fmt.Errorf("reading the job's output: %w", err)
	}
	if n != size {
		return "", node3.Errorf(node3.CodeInvalid, "the job's output file changed during upload")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// redactURL keeps a URL's scheme and host: paths and query strings often
// carry signatures or tokens, and user info carries passwords.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	return u.Scheme + "://" + u.Host
}

// redactErr strips the full URL that net/http puts in its errors.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
