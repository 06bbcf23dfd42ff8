package storetest

import (
	"fmt"
	"testing"

	"github.com/runway-cd/runway/internal/webhook"
)

// Deliveries checks webhook.Deliveries on stores from fresh, each new and
// empty.
func Deliveries[S webhook.Deliveries](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) webhook.Deliveries { return s }, deliveryTests)
}

// wantDelivery fails t unless delivery started pipelineID ("" none).
func wantDelivery(t *testing.T, s webhook.Deliveries, delivery, pipelineID string) {
	t.Helper()
	id, found, err := s.LookupDelivery(t.Context(), delivery)
	if err != nil || id != pipelineID || found != (pipelineID != "") {
		t.Errorf("LookupDelivery(%q) = %q, %v, %v; want %q, %v", delivery, id, found, err, pipelineID, pipelineID != "")
	}
}

var deliveryTests = []test[webhook.Deliveries]{
	{"an unknown delivery is not found", func(t *testing.T, s webhook.Deliveries) {
		wantDelivery(t, s, "d1", "")
	}},
	{"a saved delivery is found; others are not", func(t *testing.T, s webhook.Deliveries) {
		if err := s.SaveDelivery(t.Context(), "d1", "p1", at(0)); err != nil {
			t.Fatal(err)
		}
		wantDelivery(t, s, "d1", "p1")
		wantDelivery(t, s, "d2", "")
	}},
	{"the first save of a delivery wins; saving it again succeeds", func(t *testing.T, s webhook.Deliveries) {
		for _, p := range []string{"p1", "p2", "p3"} {
			if err := s.SaveDelivery(t.Context(), "d1", p, at(0)); err != nil {
				t.Fatalf("SaveDelivery(d1, %s): %v", p, err)
			}
		}
		wantDelivery(t, s, "d1", "p1")
	}},
	{"concurrent saves of one delivery: all succeed, one pipeline stays", func(t *testing.T, s webhook.Deliveries) {
		parallel(t, writers, func(i int) error {
			for j := range writes {
				if err := s.SaveDelivery(t.Context(), fmt.Sprintf("d-%d-%d", i, j), fmt.Sprintf("p-%d-%d", i, j), at(j)); err != nil {
					return err
				}
				if err := s.SaveDelivery(t.Context(), "dup", fmt.Sprintf("p-%d", i), at(j)); err != nil {
					return err
				}
			}
			return nil
		})
		for i := range writers {
			for j := range writes {
				wantDelivery(t, s, fmt.Sprintf("d-%d-%d", i, j), fmt.Sprintf("p-%d-%d", i, j))
			}
		}
		first, found, err := s.LookupDelivery(t.Context(), "dup")
		if err != nil || !found {
			t.Fatalf("LookupDelivery(dup) = %q, %v, %v", first, found, err)
		}
		if err := s.SaveDelivery(t.Context(), "dup", "later", at(0)); err != nil {
			t.Fatal(err)
		}
		wantDelivery(t, s, "dup", first)
	}},
	{"hostile strings are kept exactly", func(t *testing.T, s webhook.Deliveries) {
		for i, key := range hostileKeys {
			if err := s.SaveDelivery(t.Context(), key, key+fmt.Sprint(i), at(i)); err != nil {
				t.Fatalf("SaveDelivery(%q): %v", key, err)
			}
		}
		for i, key := range hostileKeys {
			wantDelivery(t, s, key, key+fmt.Sprint(i))
		}
		wantDelivery(t, s, "%", "")
	}},
	{"a cancelled context writes nothing", func(t *testing.T, s webhook.Deliveries) {
		wantCancelled(t, "SaveDelivery", s.SaveDelivery(cancelled(t), "d1", "p1", at(0)))
		wantDelivery(t, s, "d1", "")
		_, _, err := s.LookupDelivery(cancelled(t), "d1")
		wantCancelled(t, "LookupDelivery", err)
	}},
}
