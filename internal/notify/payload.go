package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/oneline"
)

// Kind is the version of the generic JSON body. A change that removes or
// changes the meaning of a field gets a new version; fields may be added
// to this one.
const Kind = "runway.notification/v1"

// Bounds of the text a notification carries, in bytes.
const (
	maxMessage       = 2000
	maxCommitMessage = 300
	maxField         = 200
	// maxSlackText stays under Slack's 3000-character limit of a
	// section's text.
	maxSlackText = 2900
)

// Notification is the body of a "json" receiver's request, documented in
// docs/notifications.md.
type Notification struct {
	// Kind is always Kind.
	Kind string `json:"kind"`
	// ID identifies what is notified, the same for a retried delivery:
	// "pipeline/<id>/<event>" or "rollout/<env>/<app>/<event>/<seq>".
	ID string `json:"id"`
	// Event is one of AllEvents.
	Event string `json:"event"`
	// Severity is "info" or "warning" (the event log's Normal and Warning).
	Severity string `json:"severity"`
	// Title is one line for people: "web 1.4.2: pipeline failed".
	Title string `json:"title"`
	App   string `json:"app"`
	// Env is the rollout's environment; empty for pipelines.
	Env     string `json:"env,omitempty"`
	Version string `json:"version,omitempty"`
	// Message says why or what happened (the event's message).
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
	// URL is the dashboard's page of the pipeline or rollout, when the
	// server knows its own address.
	URL string `json:"url,omitempty"`
	// Pipeline is the pipeline that ended, or the one whose version the
	// rollout was rolling out, when known.
	Pipeline *PipelineInfo `json:"pipeline,omitempty"`
}

// PipelineInfo is what a notification tells of a pipeline.
type PipelineInfo struct {
	ID     string `json:"id"`
	Phase  string `json:"phase"`
	Repo   string `json:"repo,omitempty"`
	Branch string `json:"branch,omitempty"`
	Commit string `json:"commit,omitempty"`
	// CommitMessage is the first line of the head commit's message.
	CommitMessage string `json:"commitMessage,omitempty"`
	Author        string `json:"author,omitempty"`
	// FailedStep is the step that failed (pipeline.failed only).
	FailedStep string    `json:"failedStep,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
}

// titles are the words of each event in a title.
var titles = map[string]string{
	PipelineSucceeded:  "pipeline succeeded",
	PipelineFailed:     "pipeline failed",
	PipelineSuperseded: "pipeline superseded",
	PipelineCancelled:  "pipeline cancelled",
	RolloutPaused:      "rollout paused",
	RolloutAborted:     "rollout aborted",
	RolloutPromoted:    "rollout promoted",
}

// symbols start a Slack message; the words that follow say the same,
// so the symbol is never the only signal.
var symbols = map[string]string{
	PipelineSucceeded:  ":white_check_mark:",
	PipelineFailed:     ":x:",
	PipelineSuperseded: ":fast_forward:",
	PipelineCancelled:  ":no_entry_sign:",
	RolloutPaused:      ":double_vertical_bar:",
	RolloutAborted:     ":rewind:",
	RolloutPromoted:    ":rocket:",
}

// severity maps an event's type.
func severity(e events.Event) string {
	if e.Type == events.Warning {
		return "warning"
	}
	return "info"
}

// title is the one line naming what happened.
func title(n *Notification) string {
	what := n.App
	if n.Version != "" {
		what += " " + n.Version
	}
	t := what + ": " + titles[n.Event]
	if n.Env != "" {
		t += " in " + n.Env
	}
	if n.Pipeline != nil && n.Pipeline.FailedStep != "" {
		t += " at " + n.Pipeline.FailedStep
	}
	return t
}

// body encodes n in format.
func body(format string, n *Notification) ([]byte, error) {
	var v any = n
	if format == FormatSlack {
		v = slackBody(n)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s body: %w", format, err)
	}
	return b, nil
}

// slackMessage is a Slack incoming-webhook payload: Text is the fallback
// shown in notifications and by clients that do not render blocks.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackBody renders n for a Slack incoming webhook.
func slackBody(n *Notification) slackMessage {
	text := n.Title
	if n.Message != "" {
		text += ": " + n.Message
	}
	head := "*" + slackEscape(n.Title) + "*"
	if n.URL != "" {
		head = "*<" + slackEscape(n.URL) + "|" + slackEscape(n.Title) + ">*"
	}
	section := symbols[n.Event] + " " + head
	if n.Message != "" {
		section += "\n" + slackEscape(n.Message)
	}
	m := slackMessage{
		Text:   cut(text, maxSlackText),
		Blocks: []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: cut(section, maxSlackText)}}},
	}
	var ctx []slackText
	if p := n.Pipeline; p != nil {
		if p.Commit != "" {
			c := "commit `" + slackEscape(short(p.Commit)) + "`"
			if p.Author != "" {
				c += " by " + slackEscape(p.Author)
			}
			if p.CommitMessage != "" {
				c += ": " + slackEscape(p.CommitMessage)
			}
			ctx = append(ctx, slackText{Type: "mrkdwn", Text: cut(c, maxSlackText)})
		}
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: "pipeline " + slackEscape(p.ID) + " · " + slackEscape(p.Phase)})
	}
	if n.Env != "" {
		ctx = append(ctx, slackText{Type: "mrkdwn", Text: "environment " + slackEscape(n.Env)})
	}
	if len(ctx) > 0 {
		m.Blocks = append(m.Blocks, slackBlock{Type: "context", Elements: ctx})
	}
	return m
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning
// to, so that text from outside cannot make links or mentions.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// short is a commit's short SHA.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// cut bounds s to limit bytes at a rune boundary, marking the cut.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = strings.ToValidUTF8(s[:limit-3], "")
	return s + "..."
}

// line cleans text from outside into one bounded line.
func line(s string, limit int) string { return oneline.Clean(s, limit) }

// firstLine is the first line of a commit message, bounded.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return line(s, maxCommitMessage)
}
