package report

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resultsFolder builds a results folder with an older valid run, a newer
// invalid run with a log, a folder without results, a "latest" link with
// an absolute target, and a link "escape" that leaves the folder. It
// returns the folder and the path of a secret file outside it.
func resultsFolder(t *testing.T) (string, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "results")
	secret := filepath.Join(base, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("secret"), 0o644))

	writeRun(t, dir, "run-old", Meta{RunID: "run-old", Seed: 1, Engine: "redis", Nemesis: []string{"kill"},
		Started: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, `{"valid": true, "checkers": []}`)
	writeRun(t, dir, "run-new", Meta{RunID: "run-new", Seed: 2, Engine: "mesh", Nemesis: []string{"partition", "pause"},
		Started: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}, `{"valid": false, "checkers": []}`)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "run-new", "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "run-new", "logs", "n1.log"), []byte("n1 started\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "run-crashed"), 0o755))

	require.NoError(t, os.Symlink(filepath.Join(dir, "run-new"), filepath.Join(dir, LatestRun)))
	require.NoError(t, os.Symlink(base, filepath.Join(dir, "escape")))
	require.NoError(t, os.Symlink(secret, filepath.Join(dir, "run-old", "secret-link")))
	return dir, secret
}

func writeRun(t *testing.T, dir, id string, meta Meta, results string) {
	t.Helper()
	run := filepath.Join(dir, id)
	require.NoError(t, os.MkdirAll(run, 0o755))
	require.NoError(t, WriteMeta(run, meta))
	require.NoError(t, os.WriteFile(filepath.Join(run, ResultsFile), []byte(results), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(run, ReportFile), []byte("<html>report of "+id+"</html>"), 0o644))
}

// get sends a request with the raw path to a real server, so the path
// reaches the handler exactly as sent.
func get(t *testing.T, srv *httptest.Server, rawPath string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	require.NoError(t, err)
	req.URL.Opaque = rawPath
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

func TestHandlerListsRunsNewestFirst(t *testing.T) {
	dir, _ := resultsFolder(t)
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()

	code, body, header := get(t, srv, "/")

	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "text/html; charset=utf-8", header.Get("Content-Type"))
	newRow := strings.Index(body, `<a href="/runs/run-new/">run-new</a>`)
	oldRow := strings.Index(body, `<a href="/runs/run-old/">run-old</a>`)
	require.GreaterOrEqual(t, newRow, 0, body)
	require.GreaterOrEqual(t, oldRow, 0, body)
	assert.Less(t, newRow, oldRow, "newest run first")
	assert.Contains(t, body, `<span class="badge invalid">invalid</span>`)
	assert.Contains(t, body, `<span class="badge valid">valid</span>`)
	assert.Contains(t, body, "<td>partition, pause</td>")
	assert.Contains(t, body, `<td class="num">2</td>`)
	assert.Contains(t, body, "2026-03-01 10:00:00 UTC")
	assert.Contains(t, body, `>run-crashed</a>`)
	assert.Contains(t, body, `<span class="badge unknown">no results</span>`)
	assert.Contains(t, body, `<td colspan="4" class="note">no meta.json</td>`)
	assert.Contains(t, body, `Latest: <a href="/runs/latest/">run-new</a>`)
	assert.NotContains(t, body, `>escape</a>`, "a link out of the results folder is no run")
	assert.Equal(t, 1, strings.Count(body, `<a href="/runs/run-new/">`))
	assert.NotContains(t, body, `>latest</a>`, "latest is not listed as a run of its own")
}

func TestHandlerServesRunFiles(t *testing.T) {
	dir, _ := resultsFolder(t)
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()

	code, body, _ := get(t, srv, "/runs/run-new/report.html")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "<html>report of run-new</html>", body)

	code, body, _ = get(t, srv, "/runs/run-new/logs/n1.log")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "n1 started\n", body)

	code, body, _ = get(t, srv, "/runs/latest/report.html")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "<html>report of run-new</html>", body)

	code, _, header := get(t, srv, "/runs/run-old/")
	assert.Equal(t, http.StatusFound, code)
	assert.Equal(t, "/runs/run-old/report.html", header.Get("Location"))

	code, _, header = get(t, srv, "/runs/run-old")
	assert.Equal(t, http.StatusMovedPermanently, code)
	assert.Equal(t, "/runs/run-old/", header.Get("Location"))

	code, body, _ = get(t, srv, "/runs/run-new/logs/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `<a href="n1.log">n1.log</a>`)
}

func TestHandlerRejectsEscapes(t *testing.T) {
	dir, _ := resultsFolder(t)
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()

	tests := []struct {
		path string
		want int
	}{
		{"/runs/../secret.txt", http.StatusBadRequest},
		{"/runs/run-new/../../secret.txt", http.StatusBadRequest},
		{"/runs/%2e%2e/secret.txt", http.StatusBadRequest},
		{"/runs/run-new/%2e%2e%2f%2e%2e%2fsecret.txt", http.StatusBadRequest},
		{"/runs/run-new/..%5c..%5csecret.txt", http.StatusBadRequest},
		{"/runs/escape/secret.txt", http.StatusNotFound},
		{"/runs/run-old/secret-link", http.StatusNotFound},
		{"/runs/missing/report.html", http.StatusNotFound},
		{"/runs/run-new/missing.txt", http.StatusNotFound},
		{"/secret.txt", http.StatusNotFound},
	}
	for _, tt := range tests {
		code, body, _ := get(t, srv, tt.path)
		assert.Equal(t, tt.want, code, tt.path)
		assert.NotContains(t, body, "secret\n", tt.path)
		assert.NotEqual(t, "secret", body, tt.path)
	}
}

func TestHandlerRejectsPost(t *testing.T) {
	dir, _ := resultsFolder(t)
	rec := httptest.NewRecorder()

	Handler(dir).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))

	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

func TestHandlerNamesBrokenRun(t *testing.T) {
	dir, _ := resultsFolder(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "run-old", ResultsFile), []byte(`{"checkers": []}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "run-new", MetaFile), []byte(`{not json`), 0o644))
	rec := httptest.NewRecorder()

	Handler(dir).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))

	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `results.json has no &#34;valid&#34; key`)
	assert.Contains(t, rec.Body.String(), "meta.json is invalid")
}

func TestHandlerMissingResultsFolder(t *testing.T) {
	rec := httptest.NewRecorder()

	Handler(filepath.Join(t.TempDir(), "none")).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))

	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), "open results folder")
	assert.Contains(t, rec.Body.String(), "No runs yet.")
}
