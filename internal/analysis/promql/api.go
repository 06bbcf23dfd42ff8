package promql

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	prompromql "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Handler serves Prometheus' instant query endpoint, /api/v1/query (GET or
// POST form, parameters query and time), in the Prometheus HTTP API's JSON
// shape, so any Prometheus client (Grafana, promtool, Runway's own
// prometheus provider) can query the embedded store.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query", p.serveQuery)
	return mux
}

// apiResponse is the envelope of every Prometheus API answer.
type apiResponse struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

type apiData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

type apiSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value,omitempty"`
	Values [][2]any          `json:"values,omitempty"`
}

func (p *Provider) serveQuery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeAPI(w, http.StatusMethodNotAllowed, apiResponse{Status: "error", ErrorType: "bad_data", Error: "method not allowed"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: err.Error()})
		return
	}
	at := time.Now()
	if s := r.Form.Get("time"); s != "" {
		t, err := parseAPITime(s)
		if err != nil {
			writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: err.Error()})
			return
		}
		at = t
	}
	var data apiData
	err := p.instant(r.Context(), r.Form.Get("query"), at, func(v parser.Value) error {
		data = encodeValue(v)
		return nil
	})
	var qerr *QueryError
	switch {
	case err == nil:
		writeAPI(w, http.StatusOK, apiResponse{Status: "success", Data: data})
	case errors.As(err, &qerr) && qerr.BadQuery:
		writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: qerr.Err.Error()})
	case errors.Is(err, ErrClosed):
		writeAPI(w, http.StatusServiceUnavailable, apiResponse{Status: "error", ErrorType: "unavailable", Error: err.Error()})
	default:
		writeAPI(w, http.StatusUnprocessableEntity, apiResponse{Status: "error", ErrorType: "execution", Error: err.Error()})
	}
}

// encodeValue renders a query result the way Prometheus' API does.
func encodeValue(v parser.Value) apiData {
	switch v := v.(type) {
	case prompromql.Vector:
		out := make([]apiSeries, 0, len(v))
		for _, s := range v {
			out = append(out, apiSeries{Metric: s.Metric.Map(), Value: point(s.T, s.F)})
		}
		return apiData{ResultType: "vector", Result: out}
	case prompromql.Scalar:
		return apiData{ResultType: "scalar", Result: point(v.T, v.V)}
	case prompromql.String:
		return apiData{ResultType: "string", Result: [2]any{float64(v.T) / 1000, v.V}}
	case prompromql.Matrix:
		out := make([]apiSeries, 0, len(v))
		for _, s := range v {
			values := make([][2]any, 0, len(s.Floats))
			for _, f := range s.Floats {
				values = append(values, point(f.T, f.F))
			}
			out = append(out, apiSeries{Metric: s.Metric.Map(), Values: values})
		}
		return apiData{ResultType: "matrix", Result: out}
	default:
		return apiData{ResultType: string(v.Type())}
	}
}

func point(ms int64, f float64) [2]any {
	return [2]any{float64(ms) / 1000, formatFloat(f)}
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// parseAPITime accepts Unix seconds (with a fraction) or RFC 3339.
func parseAPITime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func writeAPI(w http.ResponseWriter, status int, resp apiResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}
