package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDiagramCommand(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{args: []string{"diagram", "peer"}, want: "%% peer\nstateDiagram-v2"},
		{args: []string{"diagram", "--dot", "signal"}, want: `digraph "signal"`},
		{args: []string{"diagram"}, want: "%% engine"},
		{args: []string{"diagram", "nope"}, wantErr: true},
	}
	for _, tt := range tests {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(tt.args)
		err := cmd.Execute()
		if (err != nil) != tt.wantErr {
			t.Fatalf("%v: err %v", tt.args, err)
		}
		if !tt.wantErr && !strings.Contains(out.String(), tt.want) {
			t.Fatalf("%v: output lacks %q:\n%s", tt.args, tt.want, out.String()[:min(200, out.Len())])
		}
	}
}
