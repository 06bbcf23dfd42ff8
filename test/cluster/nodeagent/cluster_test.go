package nodeagent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/test/cluster"
	"github.com/runway-cd/runway/test/cluster/nodeagent"
)

// The package's tests share one control plane and one node agent.
var shared struct {
	mu      sync.Mutex
	agent   *nodeagent.Agent
	dir     string
	reg     *httptest.Server
	imgRef  string
	imgErr  error
	imgOnce sync.Once
}

func TestMain(m *testing.M) {
	code := cluster.RunMain(m, cluster.Options{})
	shared.mu.Lock()
	if shared.agent != nil {
		shared.agent.Stop()
	}
	if shared.reg != nil {
		shared.reg.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// logLevel is the agent's log level in tests: NODEAGENT_DEBUG=1 for all.
func logLevel() slog.Level {
	if os.Getenv("NODEAGENT_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// wait bounds every wait on the cluster.
const wait = 2 * time.Minute

// env is what a test needs: a client, its own namespace, the image of
// simapp and the agent.
type env struct {
	cs    kubernetes.Interface
	ns    string
	image string
	agent *nodeagent.Agent
}

func setUp(t *testing.T) env {
	t.Helper()
	c := cluster.Shared(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.reg == nil {
		shared.reg = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	}
	host := strings.TrimPrefix(shared.reg.URL, "http://")
	opts := image.Options{Registry: host + "/runway", Insecure: true}
	if shared.agent == nil {
		dir, err := os.MkdirTemp("", "runway-nodeagent-test-")
		if err != nil {
			t.Fatal(err)
		}
		shared.dir = dir
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		a, err := nodeagent.Start(ctx, nodeagent.Options{
			Config:  c.Config,
			Dir:     dir,
			Images:  opts,
			BackOff: nodeagent.TestBackOff,
			Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})),
		})
		if err != nil {
			t.Fatal(err)
		}
		shared.agent = a
	}
	shared.imgOnce.Do(func() { shared.imgRef, shared.imgErr = buildImage(t, opts) })
	if shared.imgErr != nil {
		t.Fatalf("building simapp's image: %v", shared.imgErr)
	}
	return env{cs: cs, ns: namespace(t, cs), image: shared.imgRef, agent: shared.agent}
}

// buildImage builds testdata/simapp and pushes an image of it.
func buildImage(t *testing.T, opts image.Options) (string, error) {
	dir, err := os.MkdirTemp("", "simapp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "simapp"), "./testdata/simapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	b, err := image.New(opts)
	if err != nil {
		return "", err
	}
	return b.Build(t.Context(), "simapp", "v1", dir, []string{"./simapp"})
}

// namespace creates a namespace of the test's own, deleted at the end.
func namespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// eventually polls cond until it is true, failing t after wait.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pods lists the namespace's pods with label app=app.
func pods(ctx context.Context, e env, app string) ([]corev1.Pod, error) {
	l, err := e.cs.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func deployment(e env, app string, replicas int32, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": app}
	if c.Name == "" {
		c.Name = "main"
	}
	c.Image = e.image
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: e.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](2)},
			},
		},
	}
}

// serving is simapp serve on $(POD_IP):8080 with probes.
func serving(extra ...corev1.EnvVar) corev1.Container {
	return corev1.Container{
		Args:  []string{"serve"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		Env: append([]corev1.EnvVar{
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOST", Value: "$(POD_IP)"},
			{Name: "PORT", Value: "8080"},
		}, extra...),
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
			PeriodSeconds: 1,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
			PeriodSeconds:    1,
			FailureThreshold: 3,
		},
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func TestDeploymentBecomesReady(t *testing.T) {
	e := setUp(t)
	ctx := t.Context()
	if _, err := e.cs.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"DATABASE_URL": "postgres://u:p@127.0.0.1/db", "token": "t0k"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Data:       map[string]string{"MODE": "staging"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := serving(
		corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "token"}}},
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: "URL", Value: "http://$(HOST):$(PORT)/"},
	)
	c.EnvFrom = []corev1.EnvFromSource{
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
		{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, deployment(e, "web", 2, c), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deployment to be available", func(ctx context.Context) (bool, error) {
		d, err := e.cs.AppsV1().Deployments(e.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.AvailableReplicas == 2 && d.Status.ReadyReplicas == 2, nil
	})
	list, err := pods(ctx, e, "web")
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]bool{}
	for _, p := range list {
		if p.Spec.NodeName != e.agent.NodeName() || p.Status.Phase != corev1.PodRunning || !strings.HasPrefix(p.Status.PodIP, "127.1.") || p.Status.HostIP != "127.0.0.1" {
			t.Fatalf("pod %s: node %q phase %s podIP %q hostIP %q", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.Status.HostIP)
		}
		if ips[p.Status.PodIP] {
			t.Fatalf("pod IP %s given twice", p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
		cs := p.Status.ContainerStatuses[0]
		if !cs.Ready || cs.State.Running == nil || !strings.HasPrefix(cs.ContainerID, "sim://") || !strings.Contains(cs.ImageID, "@sha256:") || cs.Started == nil || !*cs.Started {
			t.Fatalf("pod %s: container status %+v", p.Name, cs)
		}
		var vars []string
		if err := getJSON(ctx, "http://"+p.Status.PodIP+":8080/env", &vars); err != nil {
			t.Fatalf("pod %s is not reachable on its IP: %v", p.Name, err)
		}
		slices.Sort(vars)
		want := []string{
			"CFG_MODE=staging",
			"DATABASE_URL=postgres://u:p@127.0.0.1/db",
			"HOST=" + p.Status.PodIP,
			"PATH=" + os.Getenv("PATH"),
			"PORT=8080",
			"POD_IP=" + p.Status.PodIP,
			"POD_NAME=" + p.Name,
			"TOKEN=t0k",
			"URL=http://" + p.Status.PodIP + ":8080/",
			"token=t0k",
		}
		slices.Sort(want)
		if !slices.Equal(vars, want) {
			t.Fatalf("pod %s's environment:\n%q\nwant\n%q", p.Name, vars, want)
		}
		var id struct {
			PID, UID int
			WD       string
		}
		if err := getJSON(ctx, "http://"+p.Status.PodIP+":8080/id", &id); err != nil {
			t.Fatal(err)
		}
		if cs.ContainerID != fmt.Sprintf("sim://%d", id.PID) || !strings.HasSuffix(id.WD, filepath.Join(string(p.UID), "main", "rootfs", image.AppDir)) {
			t.Fatalf("pod %s: containerID %s, process %+v", p.Name, cs.ContainerID, id)
		}
		if os.Geteuid() == 0 && id.UID != 65534 {
			t.Fatalf("pod %s runs as uid %d, want nobody (65534)", p.Name, id.UID)
		}
		for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			if !hasCondition(p, typ) {
				t.Fatalf("pod %s: condition %s not true: %+v", p.Name, typ, p.Status.Conditions)
			}
		}
	}
	node, err := e.cs.CoreV1().Nodes().Get(ctx, e.agent.NodeName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 || node.Status.Addresses[0].Address != "127.0.0.1" {
		t.Fatalf("node status %+v", node.Status)
	}
	if _, err := e.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, e.agent.NodeName(), metav1.GetOptions{}); err != nil {
		t.Fatalf("node lease: %v", err)
	}
}

func hasCondition(p corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestCrashingContainerBacksOff(t *testing.T) {
	e := setUp(t)
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(t.Context(), deployment(e, "crash", 1, corev1.Container{Args: []string{"crash", "3"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sawBackOff := false
	eventually(t, "restarts and CrashLoopBackOff", func(ctx context.Context) (bool, error) {
		list, err := pods(ctx, e, "crash")
		if err != nil || len(list) != 1 || len(list[0].Status.ContainerStatuses) != 1 {
			return false, err
		}
		p := list[0]
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
			if !strings.Contains(w.Message, "back-off") {
				return false, fmt.Errorf("CrashLoopBackOff message %q", w.Message)
			}
		}
		last := cs.LastTerminationState.Terminated
		if last != nil && (last.ExitCode != 3 || last.Reason != "Error") {
			return false, fmt.Errorf("last termination %+v", last)
		}
		if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending {
			return false, fmt.Errorf("phase %s", p.Status.Phase)
		}
		return sawBackOff && cs.RestartCount >= 2 && last != nil && !cs.Ready, nil
	})
	list, err := pods(t.Context(), e, "crash")
	if err != nil {
		t.Fatal(err)
	}
	logs, err := e.cs.CoreV1().Pods(e.ns).GetLogs(list[0].Name, &corev1.PodLogOptions{Previous: true}).DoRaw(t.Context())
	if err != nil || string(logs) != "simapp: crashing\n" {
		t.Fatalf("previous logs %q, %v", logs, err)
	}
}

func job(e env, name string, args ...string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "job", Image: e.image, Args: args}},
				},
			},
		},
	}
}

// jobDone waits for the Job to end and returns whether it completed.
func jobDone(t *testing.T, e env, name string) bool {
	t.Helper()
	var complete bool
	eventually(t, "job "+name+" to finish", func(ctx context.Context) (bool, error) {
		j, err := e.cs.BatchV1().Jobs(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				complete = true
				return true, nil
			case batchv1.JobFailed:
				return true, nil
			}
		}
		return false, nil
	})
	return complete
}

func TestJobs(t *testing.T) {
	e := setUp(t)
	tests := []struct {
		name     string
		args     []string
		complete bool
		phase    corev1.PodPhase
		code     int32
	}{
		{name: "ok", args: []string{"print", "2", "0"}, complete: true, phase: corev1.PodSucceeded, code: 0},
		{name: "fails", args: []string{"print", "2", "7"}, complete: false, phase: corev1.PodFailed, code: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.cs.BatchV1().Jobs(e.ns).Create(t.Context(), job(e, tt.name, tt.args...), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := jobDone(t, e, tt.name); got != tt.complete {
				t.Fatalf("job complete = %v, want %v", got, tt.complete)
			}
			list, err := pods(t.Context(), e, tt.name)
			if err != nil || len(list) != 1 {
				t.Fatalf("job pods: %d, %v", len(list), err)
			}
			p := list[0]
			term := p.Status.ContainerStatuses[0].State.Terminated
			if p.Status.Phase != tt.phase || term == nil || term.ExitCode != tt.code {
				t.Fatalf("job pod: phase %s, state %+v", p.Status.Phase, p.Status.ContainerStatuses[0].State)
			}
			logs, err := e.cs.CoreV1().Pods(e.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: "job"}).DoRaw(t.Context())
			if err != nil || string(logs) != "line 1\nline 2\n" {
				t.Fatalf("job logs %q, %v", logs, err)
			}
		})
	}
}

func TestPodLogs(t *testing.T) {
	e := setUp(t)
	ctx := t.Context()
	if _, err := e.cs.BatchV1().Jobs(e.ns).Create(ctx, job(e, "print", "print", "5", "0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jobDone(t, e, "print")
	list, err := pods(ctx, e, "print")
	if err != nil || len(list) != 1 {
		t.Fatalf("pods: %d, %v", len(list), err)
	}
	logs := func(o *corev1.PodLogOptions) string {
		b, err := e.cs.CoreV1().Pods(e.ns).GetLogs(list[0].Name, o).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs %+v: %v", o, err)
		}
		return string(b)
	}
	if got := logs(&corev1.PodLogOptions{}); got != "line 1\nline 2\nline 3\nline 4\nline 5\n" {
		t.Fatalf("logs = %q", got)
	}
	if got := logs(&corev1.PodLogOptions{TailLines: ptr.To[int64](2)}); got != "line 4\nline 5\n" {
		t.Fatalf("tailLines 2 = %q", got)
	}
	if got := logs(&corev1.PodLogOptions{LimitBytes: ptr.To[int64](8)}); got != "line 1\nl" {
		t.Fatalf("limitBytes 8 = %q", got)
	}

	// follow streams a running container's output until it exits.
	if _, err := e.cs.BatchV1().Jobs(e.ns).Create(ctx, job(e, "tick", "tick", "30"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod string
	eventually(t, "the ticking pod to run", func(ctx context.Context) (bool, error) {
		list, err := pods(ctx, e, "tick")
		if err != nil || len(list) != 1 || len(list[0].Status.ContainerStatuses) != 1 {
			return false, err
		}
		pod = list[0].Name
		return list[0].Status.ContainerStatuses[0].State.Running != nil, nil
	})
	stream, err := e.cs.CoreV1().Pods(e.ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var lines []string
	sc := bufio.NewScanner(stream)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) == 1 {
			// Still running when the first line arrives: it is streamed.
			p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Status.Phase == corev1.PodSucceeded {
				t.Log("the pod had finished before the first line arrived")
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the followed log: %v", err)
	}
	if len(lines) != 30 || lines[0] != "tick 1" || lines[29] != "tick 30" {
		t.Fatalf("followed log: %q", lines)
	}
}

func TestImagePullFailure(t *testing.T) {
	e := setUp(t)
	d := deployment(e, "nope", 1, corev1.Container{Args: []string{"serve"}})
	d.Spec.Template.Spec.Containers[0].Image = e.image[:strings.LastIndex(e.image, "/")] + "/nothere:v1"
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	eventually(t, "ErrImagePull and ImagePullBackOff", func(ctx context.Context) (bool, error) {
		list, err := pods(ctx, e, "nope")
		if err != nil || len(list) != 1 || len(list[0].Status.ContainerStatuses) != 1 {
			return false, err
		}
		if list[0].Status.Phase != corev1.PodPending {
			return false, fmt.Errorf("phase %s", list[0].Status.Phase)
		}
		if w := list[0].Status.ContainerStatuses[0].State.Waiting; w != nil && w.Message != "" {
			reasons[w.Reason] = true
		}
		return reasons["ErrImagePull"] && reasons["ImagePullBackOff"], nil
	})
}

func TestLivenessFailureRestarts(t *testing.T) {
	e := setUp(t)
	c := serving(corev1.EnvVar{Name: "LIVE", Value: "fail"})
	c.LivenessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/livez", Port: intstr.FromString("http")}},
		PeriodSeconds:    1,
		FailureThreshold: 2,
	}
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(t.Context(), deployment(e, "sick", 1, c), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a restart for liveness", func(ctx context.Context) (bool, error) {
		list, err := pods(ctx, e, "sick")
		if err != nil || len(list) != 1 || len(list[0].Status.ContainerStatuses) != 1 {
			return false, err
		}
		cs := list[0].Status.ContainerStatuses[0]
		last := cs.LastTerminationState.Terminated
		return cs.RestartCount >= 1 && last != nil && strings.Contains(last.Message, "liveness probe failed"), nil
	})
}

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func pidOf(cs corev1.ContainerStatus) int {
	pid, _ := strconv.Atoi(strings.TrimPrefix(cs.ContainerID, "sim://"))
	return pid
}

func TestNamespaceDeletionKillsProcesses(t *testing.T) {
	e := setUp(t)
	ctx := t.Context()
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, deployment(e, "web", 2, serving()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// stubborn ignores SIGTERM: the agent must SIGKILL it after the grace period.
	if _, err := e.cs.AppsV1().Deployments(e.ns).Create(ctx, deployment(e, "stubborn", 1, corev1.Container{Args: []string{"stubborn"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pids []int
	eventually(t, "three running pods", func(ctx context.Context) (bool, error) {
		pids = nil
		for _, app := range []string{"web", "stubborn"} {
			list, err := pods(ctx, e, app)
			if err != nil {
				return false, err
			}
			for _, p := range list {
				if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
					pids = append(pids, pidOf(p.Status.ContainerStatuses[0]))
				}
			}
		}
		return len(pids) == 3, nil
	})
	for _, pid := range pids {
		if pid <= 1 || !alive(pid) {
			t.Fatalf("pid %d is not alive", pid)
		}
	}
	if err := e.cs.CoreV1().Namespaces().Delete(ctx, e.ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the namespace to disappear", func(ctx context.Context) (bool, error) {
		_, err := e.cs.CoreV1().Namespaces().Get(ctx, e.ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still runs after its namespace is gone", pid)
		}
	}
}

func TestStopKillsProcesses(t *testing.T) {
	e := setUp(t)
	c := cluster.Shared(t)
	shared.mu.Lock()
	opts := image.Options{Registry: strings.TrimPrefix(shared.reg.URL, "http://") + "/runway", Insecure: true}
	shared.mu.Unlock()
	a := nodeagent.StartForTest(t, nodeagent.Options{Config: c.Config, NodeName: "stop-node", Images: opts})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stubborn", Namespace: e.ns, Labels: map[string]string{"app": "stop"}},
		Spec: corev1.PodSpec{
			NodeName:   a.NodeName(),
			Containers: []corev1.Container{{Name: "main", Image: e.image, Args: []string{"stubborn"}}},
		},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, "the pod to run", func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, "stubborn", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Running == nil {
			return false, err
		}
		pid = pidOf(p.Status.ContainerStatuses[0])
		return true, nil
	})
	if !alive(pid) {
		t.Fatalf("pid %d is not alive", pid)
	}
	a.Stop()
	if alive(pid) {
		t.Fatalf("pid %d still runs after Stop", pid)
	}
	// No node runs the pod now: remove it as an operator would.
	if err := e.cs.CoreV1().Pods(e.ns).Delete(t.Context(), "stubborn", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
}

func TestInitContainersRunFirst(t *testing.T) {
	e := setUp(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "init", Namespace: e.ns, Labels: map[string]string{"app": "init"}},
		Spec: corev1.PodSpec{
			RestartPolicy:  corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "first", Image: e.image, Args: []string{"print", "1", "0"}}},
			Containers:     []corev1.Container{{Name: "main", Image: e.image, Args: []string{"print", "2", "0"}}},
		},
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	eventually(t, "the pod to succeed", func(ctx context.Context) (bool, error) {
		var err error
		p, err = e.cs.CoreV1().Pods(e.ns).Get(ctx, "init", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("pod failed: %+v", p.Status)
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	})
	first := p.Status.InitContainerStatuses[0].State.Terminated
	main := p.Status.ContainerStatuses[0].State.Terminated
	if first == nil || main == nil || first.ExitCode != 0 || main.ExitCode != 0 || main.StartedAt.Before(&first.FinishedAt) || !hasCondition(*p, corev1.PodInitialized) {
		t.Fatalf("status %+v", p.Status)
	}
	logs, err := e.cs.CoreV1().Pods(e.ns).GetLogs("init", &corev1.PodLogOptions{Container: "first"}).DoRaw(t.Context())
	if err != nil || string(logs) != "line 1\n" {
		t.Fatalf("init container's logs %q, %v", logs, err)
	}
}
