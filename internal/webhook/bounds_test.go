package webhook_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/webhook"
)

// meter wraps a handler and counts, per request, the body bytes the
// handler read, and how many requests at once had read more than a
// request may read without a large-body slot (LargeBody and one byte).
type meter struct {
	next http.Handler

	mu         sync.Mutex
	holding    int
	maxHolding int
	read       map[string]int64 // by X-Test-Index
}

func (m *meter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cb := &countingBody{m: m, rc: r.Body}
	r.Body = cb
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if cb.large {
			m.holding--
		}
		m.read[r.Header.Get("X-Test-Index")] = cb.n
	}()
	m.next.ServeHTTP(w, r)
}

func (m *meter) stats() (maxHolding int, read map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	read = make(map[string]int64, len(m.read))
	for k, v := range m.read {
		read[k] = v
	}
	return m.maxHolding, read
}

type countingBody struct {
	m     *meter
	rc    io.ReadCloser
	n     int64
	large bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	k, err := c.rc.Read(p)
	c.n += int64(k)
	if !c.large && c.n > webhook.LargeBody+1 {
		c.large = true
		c.m.mu.Lock()
		c.m.holding++
		c.m.maxHolding = max(c.m.maxHolding, c.m.holding)
		c.m.mu.Unlock()
	}
	return k, err
}

func (c *countingBody) Close() error { return c.rc.Close() }

var errGaveUp = errors.New("test stopped sending the body")

// TestHandlerBoundsLargeBodies sends 16 bodies of 25 MiB with a bad
// signature at once. Their senders hold the bodies back, so every request
// is in the handler at the same time: the two that get a large-body slot
// wait for their bodies, the fourteen others must be refused with 503 and
// Retry-After without their bodies being read (a declared length) or after
// at most LargeBody and one byte (a chunked body). Then the two get their
// bodies and are refused with 401. At no time did more than two requests
// hold more than LargeBody+1 bytes.
func TestHandlerBoundsLargeBodies(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) { testLargeBodies(t, chunked) })
	}
}

func testLargeBodies(t *testing.T, chunked bool) {
	const (
		n     = 16
		slots = webhook.DefaultLargeBodies
		size  = webhook.MaxBody
	)
	st := &starter{}
	m := &meter{read: map[string]int64{}}
	m.next = newHandler(t, webhook.Options{Starter: st})
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	type result struct {
		i          int
		status     int
		retryAfter string
		err        error
	}
	results := make(chan result, n)
	release := make([]chan bool, n) // true: send the rest of the body
	var feeders sync.WaitGroup
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for i := range n {
		pr, pw := io.Pipe()
		t.Cleanup(func() { pw.CloseWithError(errGaveUp) }) // nothing hangs if the test fails
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/webhooks/github", pr)
		if err != nil {
			t.Fatal(err)
		}
		if !chunked {
			req.ContentLength = size
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "big-"+strconv.Itoa(i))
		req.Header.Set("X-Hub-Signature-256", sign([]byte("not the secret"), "whatever"))
		req.Header.Set("X-Test-Index", strconv.Itoa(i))
		go func() {
			resp, err := srv.Client().Do(req)
			r := result{i: i, err: err}
			if err == nil {
				r.status, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			results <- r
		}()
		release[i] = make(chan bool, 1)
		feeders.Go(func() {
			sent := 0
			write := func(limit int) error {
				for sent < limit {
					k, err := pw.Write(chunk[:min(len(chunk), limit-sent)])
					sent += k
					if err != nil {
						return err
					}
				}
				return nil
			}
			if chunked {
				// Enough for the handler to see the body is large.
				if err := write(webhook.LargeBody + 1); err != nil {
					return
				}
			}
			if !<-release[i] {
				pw.CloseWithError(errGaveUp)
				return
			}
			if err := write(size); err != nil {
				return
			}
			pw.Close()
		})
	}

	// Every request but the slot holders is answered while all bodies are
	// held back.
	got := map[int]result{}
	deadline := time.After(2 * time.Minute) // a hang guard, not a measurement
	for len(got) < n-slots {
		select {
		case r := <-results:
			got[r.i] = r
		case <-deadline:
			t.Fatalf("only %d of %d requests answered while their bodies were held back: %v (large bodies are not capped)", len(got), n-slots, got)
		}
	}
	for i, r := range got {
		if r.err != nil || r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Errorf("request %d: %d, Retry-After %q, %v; want 503 with Retry-After", i, r.status, r.retryAfter, r.err)
		}
		release[i] <- false
	}
	for i := range n {
		if _, ok := got[i]; !ok {
			release[i] <- true
		}
	}
	for len(got) < n {
		select {
		case r := <-results:
			if r.err != nil || r.status != http.StatusUnauthorized {
				t.Errorf("slot holder %d: %d, %v; want 401", r.i, r.status, r.err)
			}
			got[r.i] = r
		case <-deadline:
			t.Fatalf("the slot holders never answered")
		}
	}
	feeders.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	srv.Close() // waits for the handlers, so the meter has every count

	maxHolding, read := m.stats()
	if maxHolding > slots {
		t.Errorf("%d requests held a large body at once, want at most %d", maxHolding, slots)
	}
	if maxHolding == 0 {
		t.Errorf("no request read a large body: the test did not exercise the slots")
	}
	limit := int64(0)
	if chunked {
		limit = webhook.LargeBody + 1
	}
	for i, r := range got {
		k := strconv.Itoa(i)
		switch r.status {
		case http.StatusServiceUnavailable:
			if read[k] > limit {
				t.Errorf("refused request %d had %d body bytes read, want at most %d", i, read[k], limit)
			}
		case http.StatusUnauthorized:
			if read[k] != size {
				t.Errorf("slot holder %d had %d body bytes read, want %d", i, read[k], size)
			}
		}
	}
	if s := st.started(); len(s) != 0 {
		t.Errorf("bad signatures started %d pipelines", len(s))
	}
	t.Logf("peak large bodies held at once: %d; heap in use %d MiB before, %d MiB after", maxHolding, before.HeapInuse>>20, after.HeapInuse>>20)
}

// TestHandlerBoundsHeldBodies holds many requests that declare a 1 MiB
// body and send one byte: only Bodies of them may be read at once, the
// rest are answered 503 at once without reading, so connections alone
// cannot make the server hold memory.
func TestHandlerBoundsHeldBodies(t *testing.T) {
	const slots, conns = 4, 12
	h, err := webhook.NewHandler(webhook.Options{
		Secret: secret, Tracker: tracker{}, Verifier: &verifier{}, Starter: &starter{}, Deliveries: openDB(t), Bodies: slots,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	busy := 0
	for i := range conns {
		c, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		fmt.Fprintf(c, "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: held-%d\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n{",
			i, strings.Repeat("0", 64), webhook.LargeBody)
		// A refused request is answered at once; a read one waits for the
		// rest of its body, so a short deadline tells them apart.
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.Contains(line, " 503 ") {
			busy++
		} else if line != "" {
			t.Fatalf("connection %d answered %q before its body was sent", i, line)
		}
	}
	if busy != conns-slots {
		t.Fatalf("%d of %d held requests were refused, want %d (only %d may be read at once)", busy, conns, conns-slots, slots)
	}
}
