package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wscluster/wscluster/checker"
)

// LatestRun is the name of the link in the results folder that points at
// the newest run. The browser follows it even when its target is absolute
// or lies outside the results folder.
const LatestRun = "latest"

// Handler returns an HTTP handler that browses the runs in resultsDir, one
// folder per run:
//
//	GET /                 the runs, newest first, with verdict, engine,
//	                      nemesis, seed and start time
//	GET /runs/<id>/       redirects to the run's report.html, or lists the
//	                      folder when it has no report
//	GET /runs/<id>/<file> a file of the run: logs, history, results
//
// It serves only files under resultsDir. A path with a ".." segment gets
// 400, and a symbolic link that leaves resultsDir or its run folder is
// not followed (404, with the reason logged). The one exception is the
// run folder named LatestRun, whose link is resolved first. The handler
// reads resultsDir on every request, so new runs appear without a restart.
func Handler(resultsDir string) http.Handler {
	return &browser{dir: resultsDir}
}

type browser struct {
	dir string
}

// ServeHTTP implements http.Handler.
func (b *browser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	if hasDotDot(r.URL.Path) || hasDotDot(r.URL.RawPath) {
		http.Error(w, "invalid path: \"..\" segments are not allowed", http.StatusBadRequest)
		return
	}

	switch {
	case r.URL.Path == "/":
		b.serveIndex(w, r)
	case r.URL.Path == "/runs" || r.URL.Path == "/runs/":
		http.Redirect(w, r, "/", http.StatusFound)
	case strings.HasPrefix(r.URL.Path, "/runs/"):
		b.serveRun(w, r, strings.TrimPrefix(r.URL.Path, "/runs/"))
	default:
		http.NotFound(w, r)
	}
}

// hasDotDot reports whether a slash-separated path has a ".." segment,
// also when a backslash separates it.
func hasDotDot(p string) bool {
	for seg := range strings.FieldsFuncSeq(p, func(c rune) bool { return c == '/' || c == '\\' }) {
		if seg == ".." {
			return true
		}
	}
	return false
}

// serveRun serves rest, which is "<id>" or "<id>/<file>", from the run
// folder id.
func (b *browser) serveRun(w http.ResponseWriter, r *http.Request, rest string) {
	id, file, hasSlash := strings.Cut(rest, "/")
	if !hasSlash {
		http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"/", http.StatusMovedPermanently)
		return
	}
	root, err := b.openRun(id)
	if err != nil {
		// A missing run is the client's mistake, but anything else,
		// such as a link out of the results folder, is worth a log line.
		if !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("report: open run folder", "run", id, "err", err)
		}
		http.Error(w, fmt.Sprintf("run %q not found", id), http.StatusNotFound)
		return
	}
	defer root.Close()

	// A run's own page is its report, when there is one.
	if file == "" {
		if _, err := root.Stat(ReportFile); err == nil {
			http.Redirect(w, r, "/runs/"+url.PathEscape(id)+"/"+ReportFile, http.StatusFound)
			return
		}
	}

	// http.FileServerFS serves ranges, content types and folder listings.
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + file
	r2.URL.RawPath = ""
	http.FileServerFS(runFS{fsys: root.FS(), run: id}).ServeHTTP(w, r2)
}

// runFS is a run folder as seen by the file server. The folder's os.Root
// rejects names that leave it, links included. runFS turns that and any
// other open error except "permission denied" into "not found", so the
// client gets 404 instead of 500, and logs the real error.
type runFS struct {
	fsys fs.FS
	run  string
}

// Open implements fs.FS.
func (r runFS) Open(name string) (fs.File, error) {
	f, err := r.fsys.Open(name)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return f, err
	}
	slog.Warn("report: open run file", "run", r.run, "file", name, "err", err)
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// openRun opens the folder of run id. It rejects ids that are not one path
// segment, and any run folder reached through a link that leaves
// resultsDir, except LatestRun.
func (b *browser) openRun(id string) (*os.Root, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) {
		return nil, fmt.Errorf("report: invalid run id %q", id)
	}
	if id == LatestRun {
		target, err := filepath.EvalSymlinks(filepath.Join(b.dir, LatestRun))
		if err != nil {
			return nil, fmt.Errorf("report: resolve %s: %w", LatestRun, err)
		}
		return os.OpenRoot(target)
	}
	results, err := os.OpenRoot(b.dir)
	if err != nil {
		return nil, fmt.Errorf("report: open results folder: %w", err)
	}
	defer results.Close()
	return results.OpenRoot(id)
}

// runSummary is one row of the run list.
type runSummary struct {
	ID      string
	Verdict string
	// VerdictClass is the CSS class of the verdict. A run without results
	// gets the class of unknown, because it is no pass.
	VerdictClass string
	Meta         Meta
	HasMeta      bool
	When         time.Time
	Problems     []string
}

// indexPage is the data of the run list.
type indexPage struct {
	Dir    string
	Runs   []runSummary
	Latest string
	Error  string
}

func (b *browser) serveIndex(w http.ResponseWriter, r *http.Request) {
	page := indexPage{Dir: b.dir}
	runs, err := b.listRuns()
	if err != nil {
		slog.Error("report: list runs", "dir", b.dir, "err", err)
		page.Error = err.Error()
	}
	page.Runs = runs
	if target, err := os.Readlink(filepath.Join(b.dir, LatestRun)); err == nil {
		page.Latest = filepath.Base(target)
	}

	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, "index.html.tmpl", page); err != nil {
		slog.Error("report: render run list", "dir", b.dir, "err", err)
		http.Error(w, "rendering the run list failed; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// listRuns reads every run folder in resultsDir, newest first. A folder
// whose meta.json or results.json cannot be read is still listed, with
// the problem named.
func (b *browser) listRuns() ([]runSummary, error) {
	results, err := os.OpenRoot(b.dir)
	if err != nil {
		return nil, fmt.Errorf("open results folder %s: %w", b.dir, err)
	}
	defer results.Close()
	entries, err := fs.ReadDir(results.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("read results folder %s: %w", b.dir, err)
	}

	var runs []runSummary
	for _, e := range entries {
		if e.Name() == LatestRun || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		run, ok := readRun(results, e.Name())
		if ok {
			runs = append(runs, run)
		}
	}
	slices.SortFunc(runs, func(x, y runSummary) int {
		return cmp.Or(y.When.Compare(x.When), cmp.Compare(y.ID, x.ID))
	})
	return runs, nil
}

// readRun summarizes the run folder name. It returns false for entries
// that are not folders, including links that leave resultsDir.
func readRun(results *os.Root, name string) (runSummary, bool) {
	root, err := results.OpenRoot(name)
	if err != nil {
		return runSummary{}, false
	}
	defer root.Close()
	info, err := root.Stat(".")
	if err != nil || !info.IsDir() {
		return runSummary{}, false
	}

	run := runSummary{ID: name, When: info.ModTime(), Verdict: "no results", VerdictClass: checker.Unknown.String()}
	if b, err := root.ReadFile(MetaFile); err == nil {
		if err := json.Unmarshal(b, &run.Meta); err != nil {
			run.Problems = append(run.Problems, fmt.Sprintf("%s is invalid: %v", MetaFile, err))
		} else {
			run.HasMeta = true
			if !run.Meta.Started.IsZero() {
				run.When = run.Meta.Started
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		run.Problems = append(run.Problems, fmt.Sprintf("%s: %v", MetaFile, err))
	}
	if b, err := root.ReadFile(ResultsFile); err == nil {
		var res struct {
			Valid *checker.Verdict `json:"valid"`
		}
		switch err := json.Unmarshal(b, &res); {
		case err != nil:
			run.Problems = append(run.Problems, fmt.Sprintf("%s is invalid: %v", ResultsFile, err))
		case res.Valid == nil:
			run.Problems = append(run.Problems, fmt.Sprintf("%s has no \"valid\" key", ResultsFile))
		default:
			run.Verdict = res.Valid.String()
			run.VerdictClass = run.Verdict
		}
	}
	return run, true
}
