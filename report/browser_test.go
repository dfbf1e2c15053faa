package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPath returns the headless browser, or skips the test when it is
// missing. With CI=true a missing browser fails the test instead.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found on PATH; CI=true requires it (on Debian: apt-get install chromium)")
	}
	t.Skip("chromium not found on PATH; install it (on Debian: apt-get install chromium) to render the report in a browser")
	return ""
}

// runChromium runs a headless browser with args and returns its standard
// output. Its own profile folder keeps parallel runs apart.
func runChromium(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--disable-extensions"}
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "chromium %v failed: %s", args, stderr.String())
	return stdout.Bytes()
}

// TestReportRendersInBrowser loads an invalid run's report in headless
// Chromium and checks the rendered DOM and a screenshot.
func TestReportRendersInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	dir := t.TempDir()
	require.NoError(t, Write(dir, sampleMeta(), invalidResults(), sampleRun(t)))
	url := "file://" + filepath.Join(dir, ReportFile)

	dom := string(runChromium(t, browser, "--dump-dom", url))

	assert.Contains(t, dom, `<div id="verdict" class="verdict invalid">invalid</div>`)
	assert.Contains(t, dom, `<tr class="checker-row" id="checker-delivery">`)
	assert.Contains(t, dom, `<tr class="checker-row" id="checker-presence">`)
	assert.Equal(t, 4, strings.Count(dom, "<svg "), "one SVG chart per figure")
	assert.Contains(t, dom, ">f1 partition</text>")
	assert.Contains(t, dom, "message m7 never reached subscriber 1 on n3")
	assert.Equal(t, 2, strings.Count(dom, `<tr class="fault-row">`))

	shot := filepath.Join(dir, "report.png")
	runChromium(t, browser, "--window-size=1280,2400", "--screenshot="+shot, url)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, 1280, img.Bounds().Dx())

	// The verdict banner is drawn in red near the top left: a blank or
	// unstyled page would have no strongly red pixel there.
	assert.True(t, hasRedPixel(img, image.Rect(0, 0, 400, 120)), "no red verdict banner in the screenshot's top left corner")
}

func hasRedPixel(img image.Image, area image.Rectangle) bool {
	for y := area.Min.Y; y < area.Max.Y; y++ {
		for x := area.Min.X; x < area.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 > 150 && g>>8 < 80 && b>>8 < 80 {
				return true
			}
		}
	}
	return false
}
