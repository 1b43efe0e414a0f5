package definition_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestModelNeedsNoYAML checks that the model, and the packages that only
// read it, do not pull in a YAML parser: reading a project file is package
// projectfile's job.
func TestModelNeedsNoYAML(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with:", err)
	}
	const module = "github.com/kiln-dev/kiln/internal/"
	cmd := exec.Command(goTool, "list", "-deps", module+"definition", module+"tile", module+"query", module+"ingest")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(strings.ToLower(pkg), "yaml") {
			t.Errorf("definition, tile, query or ingest depends on %s", pkg)
		}
	}
}
