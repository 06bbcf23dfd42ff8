package analysis

// MaintainSuccessRate is the original's maintain-success-rate
// AnalysisTemplate rewritten for Runway's gateway metrics: the canary
// version's ratio of 5xx answers over the last 30s must stay at most 0.2,
// measured every 10s; the 4th failed measurement fails the canary. Args:
// app and version (required), env (default production). It is identical to
// testdata/maintain-success-rate.yaml, which the tests parse.
const MaintainSuccessRate = `# The original's AnalysisTemplate, rewritten for Runway's gateway metrics.
# Success while at most 20% of the canary's requests answer 5xx; the 4th
# failed measurement (failureLimit 3) fails the canary. The rate window is
# 30s instead of a few minutes so that a demo canary with short pauses is
# judged on its own recent traffic; it needs a scrape interval of at most
# 15s (Runway's embedded scraper takes one every 5s). No address: Runway's
# embedded PromQL; set provider.prometheus.address to use a Prometheus server.
# "or vector(0)": a version that never answered 5xx has no 5xx series, and
# that is a ratio of 0, not "no data". No traffic at all still gives no
# data, which Runway counts as Inconclusive.
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: maintain-success-rate
spec:
  args:
  - name: app
  - name: version
  - name: env
    value: production
  metrics:
  - name: success-rate
    interval: 10s
    failureLimit: 3
    successCondition: result[0] <= 0.2
    provider:
      prometheus:
        query: |
          (sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}",code=~"5.."}[30s])) or vector(0))
          /
          sum(rate(runway_gateway_requests_total{job="runway-gateway",env="{{args.env}}",app="{{args.app}}",version="{{args.version}}"}[30s]))
`
