package manifest

import (
	"fmt"
	"time"
)

// NewVersion returns "v" + the UTC time as YYYYMMDDHHMMSS, as the original
// does with date '+%Y%m%d%H%M%S'. When that version is taken (two changes in
// the same second) it moves on by one second until it finds a free one, so
// versions stay sortable by time and valid as image tags and host labels.
func NewVersion(now time.Time, taken func(string) bool) string {
	t := now.UTC().Truncate(time.Second)
	for {
		v := fmt.Sprintf("v%s", t.Format("20060102150405"))
		if taken == nil || !taken(v) {
			return v
		}
		t = t.Add(time.Second)
	}
}
