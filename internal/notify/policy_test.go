package notify

import (
	"net/http"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {7, MaxBackoff}, {100, MaxBackoff}} {
		if got := backoff(tc.attempt); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
	for range 100 {
		if d := equalJitter(8 * time.Second); d < 4*time.Second || d > 8*time.Second {
			t.Fatalf("equalJitter(8s) = %s", d)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, v string
		want    time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"bounded", "86400", MaxBackoff},
		{"huge", "99999999999999999", MaxBackoff},
		{"negative", "-3", 0},
		{"date", now.Add(20 * time.Second).Format(http.TimeFormat), 20 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryAfter(tc.v, now); got != tc.want {
				t.Errorf("retryAfter(%q) = %s, want %s", tc.v, got, tc.want)
			}
		})
	}
}

func TestCut(t *testing.T) {
	s := cut("ééééé", 6)
	if !utf8.ValidString(s) || len(s) > 6 {
		t.Errorf("cut = %q", s)
	}
	if cut("short", 10) != "short" {
		t.Error("cut changed a short string")
	}
}

func FuzzRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2026 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, time.Now()); d < 0 || d > MaxBackoff {
			t.Fatalf("retryAfter(%q) = %s", v, d)
		}
	})
}
