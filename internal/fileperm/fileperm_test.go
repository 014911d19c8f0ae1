package fileperm

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	const me, other = 1000, 1001
	for _, c := range []struct {
		kind  Kind
		mode  fs.FileMode
		owner int
		act   Action
		want  fs.FileMode
	}{
		{File, 0o600, me, Keep, 0o600},
		{File, 0o400, me, Keep, 0o400},
		{File, 0o644, me, Tighten, 0o600},
		{File, 0o640, me, Tighten, 0o600},
		{File, 0o666, me, Tighten, 0o600},
		{File, 0o777, me, Tighten, 0o700},
		{File, 0o604, me, Tighten, 0o600},
		{File, 0o044, me, Tighten, 0o600},
		{File, 0o600, other, Refuse, 0},
		{File, 0o644, other, Refuse, 0},
		{File, 0o644, 0, Refuse, 0},
		{File, fs.ModeSymlink | 0o777, me, Refuse, 0},
		{File, fs.ModeDir | 0o700, me, Refuse, 0},
		{File, fs.ModeNamedPipe | 0o600, me, Refuse, 0},
		{Dir, fs.ModeDir | 0o700, me, Keep, 0o700},
		{Dir, fs.ModeDir | 0o755, me, Tighten, 0o700},
		{Dir, fs.ModeDir | 0o777, me, Tighten, 0o700},
		{Dir, fs.ModeDir | 0o070, me, Tighten, 0o700},
		{Dir, fs.ModeDir | 0o700, other, Refuse, 0},
		{Dir, fs.ModeDir | 0o777, other, Refuse, 0},
		{Dir, 0o600, me, Refuse, 0},
	} {
		act, want, why := Decide(c.kind, c.mode, c.owner, me)
		if act != c.act || (act != Refuse && want != c.want) {
			t.Errorf("Decide(%v, %v, owner %d) = %v %04o, want %v %04o", c.kind, c.mode, c.owner, act, want, c.act, c.want)
		}
		if (act == Refuse) != (why != "") {
			t.Errorf("Decide(%v, %v, owner %d): reason %q with action %v", c.kind, c.mode, c.owner, why, act)
		}
	}
}

func logger() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCheckTightensFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	log, out := logger()
	if err := Check(p, File, log); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, p); m != 0o600 {
		t.Fatalf("mode %04o after Check, want 0600", m)
	}
	if s := out.String(); !strings.Contains(s, p) || !strings.Contains(s, "old_mode=0644") || !strings.Contains(s, "new_mode=0600") || !strings.Contains(s, "WARN") {
		t.Errorf("warning should name the file and both modes: %q", s)
	}
	out.Reset()
	if err := Check(p, File, log); err != nil || out.Len() != 0 {
		t.Errorf("second Check = %v, logged %q: want nil and silence", err, out)
	}
}

func TestCheckTightensDirAndTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"MANIFEST", "000001.vlog", "sub/x"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, f), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "sub")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	log, out := logger()
	if err := Tree(dir, log); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{dir: 0o700, dir + "/sub": 0o700, dir + "/MANIFEST": 0o600, dir + "/000001.vlog": 0o600, dir + "/sub/x": 0o600} {
		if m := mode(t, p); m != want {
			t.Errorf("%s: mode %04o, want %04o", p, m, want)
		}
	}
	if n := strings.Count(out.String(), "tightened"); n != 5 {
		t.Errorf("%d warnings, want 5:\n%s", n, out)
	}
}

func TestCheckMissingIsFine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope")
	if err := Check(p, File, nil); err != nil {
		t.Errorf("Check(missing file) = %v", err)
	}
	if err := Tree(p, nil); err != nil {
		t.Errorf("Tree(missing dir) = %v", err)
	}
}

func TestCheckRefusesSymlinkedFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	if err := os.WriteFile(target, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err := Check(link, File, nil)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), link) {
		t.Fatalf("Check(symlink) = %v, want a refusal naming it", err)
	}
	// A linked directory is followed: its target is what is checked.
	ddir := filepath.Join(dir, "d")
	if err := os.Mkdir(ddir, 0o755); err != nil {
		t.Fatal(err)
	}
	dlink := filepath.Join(dir, "dlink")
	if err := os.Symlink(ddir, dlink); err != nil {
		t.Fatal(err)
	}
	if err := Check(dlink, Dir, nil); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, ddir); m != 0o700 {
		t.Errorf("linked directory's target has mode %04o, want 0700", m)
	}
}

func TestCheckRefusesWrongKind(t *testing.T) {
	dir := t.TempDir()
	if err := Check(dir, File, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Check(dir as File) = %v", err)
	}
}

// TestCheckRefusesForeignOwner needs a file owned by someone else, which
// only root can make.
func TestCheckRefusesForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another user; Decide's table covers the rule")
	}
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 12345, 12345); err != nil {
		t.Skip("chown:", err)
	}
	err := Check(p, File, nil)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 12345") {
		t.Fatalf("Check(foreign file) = %v, want a refusal", err)
	}
	if m := mode(t, p); m != 0o644 {
		t.Errorf("a refused file was changed to %04o", m)
	}
}
