package redact

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

type token struct{ value string }

func (t token) String() string { return "token " + t.value }

func TestHandler(t *testing.T) {
	const secret = "hunter2-webhook-secret"
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want string // must appear in the output
	}{
		{name: "message", log: func(l *slog.Logger) { l.Info("secret is " + secret) }, want: "secret is [REDACTED]"},
		{name: "string attr", log: func(l *slog.Logger) { l.Info("m", "value", "x"+secret) }, want: `"value":"x[REDACTED]"`},
		{name: "error attr", log: func(l *slog.Logger) {
			l.Error("m", "err", fmt.Errorf("cloning: %w", errors.New("auth "+secret)))
		}, want: `"err":"cloning: auth [REDACTED]"`},
		{name: "nested group", log: func(l *slog.Logger) {
			l.Info("m", slog.Group("outer", slog.Group("inner", slog.String("k", secret))))
		}, want: `"outer":{"inner":{"k":"[REDACTED]"}}`},
		{name: "stringer", log: func(l *slog.Logger) { l.Info("m", "t", token{secret}) }, want: `"t":"token [REDACTED]"`},
		{name: "With attrs", log: func(l *slog.Logger) { l.With("pw", secret).Info("m") }, want: `"pw":"[REDACTED]"`},
		{name: "WithGroup then attr", log: func(l *slog.Logger) { l.WithGroup("g").Info("m", "pw", secret) }, want: `"g":{"pw":"[REDACTED]"}`},
		{name: "LogValuer", log: func(l *slog.Logger) { l.Info("m", "v", valuer{secret}) }, want: `"v":"[REDACTED]"`},
		{name: "non-secret values untouched", log: func(l *slog.Logger) { l.Info("m", "n", 42, "ok", true) }, want: `"n":42,"ok":true`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New()
			var buf bytes.Buffer
			l := slog.New(r.Handler(slog.NewJSONHandler(&buf, nil)))
			r.Add(secret) // added after the handler was made
			tt.log(l)
			out := buf.String()
			if strings.Contains(out, secret) {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("output %s does not contain %s", out, tt.want)
			}
		})
	}
}

type valuer struct{ v string }

func (v valuer) LogValue() slog.Value { return slog.StringValue(v.v) }

func TestNilHandler(t *testing.T) {
	var r *Redactor
	h := slog.NewTextHandler(&bytes.Buffer{}, nil)
	if got := r.Handler(h); got != slog.Handler(h) {
		t.Fatalf("nil Redactor wrapped the handler: %T", got)
	}
}
