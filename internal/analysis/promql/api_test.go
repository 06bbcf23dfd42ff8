package promql

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	e := newExporter(t, func(int64) string { return "g{k=\"a\"} 1.5\ng{k=\"b\"} 2\n" })
	clock := &stepNow{t: time.Unix(1700000000, 0), step: time.Second}
	p := newProvider(t, Options{Now: clock.now, Targets: func() []Target { return []Target{{URL: e.srv.URL, Labels: map[string]string{"instance": "x"}}} }})
	scrape(t, p, 1)
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	at := strconv.FormatInt(clock.last().Unix(), 10)
	tests := []struct {
		name       string
		method     string
		params     url.Values
		wantStatus int
		wantBody   string
	}{
		{
			name: "vector", method: http.MethodGet, params: url.Values{"query": {"g"}, "time": {at}}, wantStatus: 200,
			wantBody: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"g","instance":"x","k":"a"},"value":[1700000001,"1.5"]},{"metric":{"__name__":"g","instance":"x","k":"b"},"value":[1700000001,"2"]}]}}`,
		},
		{
			name: "scalar by POST with RFC 3339 time", method: http.MethodPost, params: url.Values{"query": {"1/0"}, "time": {"2023-11-14T22:13:21Z"}}, wantStatus: 200,
			wantBody: `{"status":"success","data":{"resultType":"scalar","result":[1700000001,"+Inf"]}}`,
		},
		{
			name: "bad query", method: http.MethodGet, params: url.Values{"query": {"sum("}}, wantStatus: 400,
			wantBody: `"errorType":"bad_data"`,
		},
		{
			name: "bad time", method: http.MethodGet, params: url.Values{"query": {"g"}, "time": {"yesterday"}}, wantStatus: 400,
			wantBody: `cannot parse \"yesterday\"`,
		},
		{
			name: "method", method: http.MethodDelete, wantStatus: 405,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *http.Request
			var err error
			if tt.method == http.MethodPost {
				req, err = http.NewRequest(tt.method, srv.URL+"/api/v1/query", strings.NewReader(tt.params.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				req, err = http.NewRequest(tt.method, srv.URL+"/api/v1/query?"+tt.params.Encode(), nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if !json.Valid(body) {
				t.Fatalf("invalid JSON: %s", body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %s\nlacks %s", body, tt.wantBody)
			}
		})
	}
}
