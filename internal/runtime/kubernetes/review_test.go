package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
)

// Unit tests of the review's findings, on client-go's fake clientset.

// recordingSecrets is a redactor that records what it is given.
type recordingSecrets struct {
	mu  sync.Mutex
	got []string
}

func (s *recordingSecrets) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, secrets...)
}

func (s *recordingSecrets) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func runwayNamespace(name, env string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env}}}
}

func TestDatabasePasswordGivenToTheRedactor(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"))
	rec := &recordingSecrets{}
	r := fakeRuntime(t, cs, Options{Secrets: rec})
	password, err := r.databasePassword(ctx, "env-a", "web")
	if err != nil {
		t.Fatalf("databasePassword: %v", err)
	}
	if got := rec.all(); !slices.Contains(got, password) {
		t.Errorf("the redactor got %q, want the password made", got)
	}
	// A restart: the password is read back from its Secret, and the new
	// runtime's redactor learns it too.
	rec2 := &recordingSecrets{}
	r2 := fakeRuntime(t, cs, Options{Secrets: rec2})
	again, err := r2.databasePassword(ctx, "env-a", "web")
	if err != nil {
		t.Fatalf("databasePassword after a restart: %v", err)
	}
	if again != password {
		t.Errorf("after a restart the password changed")
	}
	if got := rec2.all(); !slices.Contains(got, password) {
		t.Errorf("after a restart the redactor got %d secrets, want the password read back", len(got))
	}
}

func TestDatabasePasswordIsNoWorkloadsSecret(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	// App "db" version "web": its variables Secret is db-web, the name
	// older runtimes gave app web's database Secret.
	vars := newSecret(ns, workloadName("db", "web"), map[string]string{
		LabelManagedBy: ManagedBy, LabelEnv: "env-a", LabelApp: "db", LabelVersion: "web", LabelKind: KindVars,
	}, map[string][]byte{passwordKey: []byte("the-db-apps-own-variable")})
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"), vars)
	r := fakeRuntime(t, cs, Options{})
	if dbSecretName("web") == workloadName("db", "web") {
		t.Fatalf("dbSecretName(web) = workloadName(db, web) = %q", dbSecretName("web"))
	}
	password, err := r.databasePassword(ctx, "env-a", "web")
	if err != nil {
		t.Fatalf("databasePassword: %v", err)
	}
	if password == "the-db-apps-own-variable" {
		t.Fatal("app web's database password is app db's variable")
	}
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, dbSecretName("web"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels[LabelKind] != KindDatabase || s.Labels[LabelApp] != "web" {
		t.Errorf("database Secret labels %v", s.Labels)
	}
	// A Secret of the database name without the database labels is refused.
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, kruntime.Object, error) {
		if a.(k8stesting.GetAction).GetName() != dbSecretName("api") {
			return false, nil, nil
		}
		return true, newSecret(ns, dbSecretName("api"), map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a", LabelApp: "api", LabelKind: KindVars},
			map[string][]byte{passwordKey: []byte("x")}), nil
	})
	if _, err := r.databasePassword(ctx, "env-a", "api"); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("databasePassword with a vars Secret of its name = %v, want refused", err)
	}
}

func TestDatabasePasswordTakenOverFromTheOldName(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	legacy := newSecret(ns, legacyDBSecretName("web"), dbSecretLabels("env-a", "web"), map[string][]byte{passwordKey: []byte("kept")})
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"), legacy)
	rec := &recordingSecrets{}
	r := fakeRuntime(t, cs, Options{Secrets: rec})
	password, err := r.databasePassword(ctx, "env-a", "web")
	if err != nil || password != "kept" {
		t.Fatalf("databasePassword = %q, %v; want the one kept under the old name", password, err)
	}
	if !slices.Contains(rec.all(), "kept") {
		t.Error("the password taken over was not given to the redactor")
	}
}

// failingImages fails every build with err.
type failingImages struct{ err error }

func (f failingImages) Build(context.Context, string, string, string, []string) (string, error) {
	return "", f.err
}

func TestImageFailuresOfTheRegistryAreUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v2/", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"registry 503", &transport.Error{StatusCode: 503}, true},
		{"registry 429", &transport.Error{StatusCode: 429}, true},
		{"base pull 404", fmt.Errorf("pulling base image reg/base:1: %w", &transport.Error{StatusCode: 404}), true},
		{"registry 400", &transport.Error{StatusCode: 400}, false},
		{"a bad artifact", errors.New("reading artifact dir: not a directory"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := builds{images: failingImages{tt.err}}
			_, err := b.build(t.Context(), "web", "v1", "/artifact")
			if got := errors.Is(err, runtime.ErrUnavailable); got != tt.want {
				t.Errorf("build failing with %v: %v; wraps ErrUnavailable %t, want %t", tt.err, err, got, tt.want)
			}
		})
	}
}

func TestImagePushToAClosedRegistryPortIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ib, err := image.New(image.Options{Registry: addr + "/runway", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b := builds{images: ib}
	_, err = b.build(ctx, "web", "v1", dir)
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("build pushing to a closed port = %v, want it to wrap ErrUnavailable", err)
	}
}

func TestTerminatingNamespaceIsUnavailable(t *testing.T) {
	ctx := testCtx(t)
	ns := runwayNamespace(DefaultNamespacePrefix+"env-a", "env-a")
	ns.DeletionTimestamp = ptr.To(metav1.Now())
	ns.Finalizers = []string{"kubernetes"}
	cs := fake.NewClientset(ns)
	r := fakeRuntime(t, cs, Options{})
	if err := r.ensureNamespace(ctx, "env-a", nil); !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("ensureNamespace of a namespace being deleted = %v, want it to wrap ErrUnavailable", err)
	}
	// The API server's 403 of a create in it.
	forb := apierrors.NewForbidden(schema.GroupResource{Resource: "deployments"}, "web-v1", errors.New("namespace is being terminated"))
	forb.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Field: "metadata.namespace"}}
	if err := apiError("creating Deployment", forb); !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("apiError(403 NamespaceTerminating) = %v, want it to wrap ErrUnavailable", err)
	}
	if err := apiError("creating Deployment", forbidden("deployments", "web-v1")); errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("apiError(a plain 403) = %v, want it not to wrap ErrUnavailable", err)
	}
}

func TestCreateDeploymentReReadUnavailable(t *testing.T) {
	for _, tt := range []struct {
		name string
		get  error
	}{
		{"API server gone", errors.New("dial tcp 10.0.0.1:443: connect: connection refused")},
		{"deleted as created", apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web-v1")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			cs := fake.NewClientset(runwayNamespace(DefaultNamespacePrefix+"env-a", "env-a"))
			r := fakeRuntime(t, cs, Options{})
			cs.PrependReactor("create", "deployments", func(a k8stesting.Action) (bool, kruntime.Object, error) {
				return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "apps", Resource: "deployments"}, "web-v1")
			})
			cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, kruntime.Object, error) {
				return true, nil, tt.get
			})
			rs := testReplicaSet()
			_, _, err := r.createDeployment(ctx, rs, corev1.PodTemplateSpec{})
			if !errors.Is(err, runtime.ErrUnavailable) {
				t.Errorf("createDeployment = %v, want it to wrap ErrUnavailable", err)
			}
		})
	}
}

func TestAmbiguousCreateDeletesWhatItMayHaveMade(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset(runwayNamespace(DefaultNamespacePrefix+"env-a", "env-a"))
	r := fakeRuntime(t, cs, Options{})
	timeout := apierrors.NewTimeoutError("the request timed out", 1)
	cs.PrependReactor("create", "deployments", func(k8stesting.Action) (bool, kruntime.Object, error) { return true, nil, timeout })
	cs.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, kruntime.Object, error) { return true, nil, timeout })
	rs := testReplicaSet()
	if _, _, err := r.createDeployment(ctx, rs, corev1.PodTemplateSpec{}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("createDeployment timing out = %v, want ErrUnavailable", err)
	}
	if n := len(actions(cs, "delete", "deployments", "*")); n != 1 {
		t.Errorf("%d deletes of the Deployment after an ambiguous create, want 1", n)
	}
	_, err := r.createJob(ctx, runtime.Job{Env: "env-a", Name: "migrate", Command: []string{"x"}}, "ref")
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("createJob timing out = %v, want ErrUnavailable", err)
	}
	if n := len(actions(cs, "delete", "jobs", "*")); n != 1 {
		t.Errorf("%d deletes of the Job after an ambiguous create, want 1", n)
	}
	r.mu.Lock()
	left := len(r.jobs)
	r.mu.Unlock()
	if left != 0 {
		t.Errorf("%d Jobs still recorded as followed after createJob failed", left)
	}
}

func TestFailedVarsForgetsTheJob(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset(runwayNamespace(DefaultNamespacePrefix+"env-a", "env-a"))
	r := fakeRuntime(t, cs, Options{})
	cs.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, kruntime.Object, error) {
		return true, nil, forbidden("secrets", "")
	})
	if _, err := r.createJob(ctx, runtime.Job{Env: "env-a", Name: "migrate", Command: []string{"x"}}, "ref"); err == nil {
		t.Fatal("createJob with its Secret refused succeeded")
	}
	r.mu.Lock()
	left := len(r.jobs)
	r.mu.Unlock()
	if left != 0 {
		t.Errorf("%d Jobs still recorded as followed after their Secret failed", left)
	}
}

func TestAwaitReadyUnreachableAtHealthTimeout(t *testing.T) {
	ctx := testCtx(t)
	cs := fake.NewClientset(runwayNamespace(DefaultNamespacePrefix+"env-a", "env-a"))
	r := fakeRuntime(t, cs, Options{})
	rs := testReplicaSet()
	rs.HealthTimeout = 100 * time.Millisecond
	// Reachable: the replicas' fault.
	_, err := r.awaitReady(ctx, rs, "uid", 1)
	if err == nil || errors.Is(err, runtime.ErrUnavailable) || !strings.Contains(err.Error(), "health timeout") {
		t.Errorf("awaitReady, API server reachable = %v, want the health timeout, not ErrUnavailable", err)
	}
	cs.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, kruntime.Object, error) {
		return true, nil, errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
	})
	_, err = r.awaitReady(ctx, rs, "uid", 1)
	if !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("awaitReady, API server unreachable = %v, want ErrUnavailable", err)
	}
}

func TestServiceNamesAreOneToOne(t *testing.T) {
	apps := []string{"1api", "app-1api", "api", "9web", "app-9web", "app", strings.Repeat("1", runtime.MaxNameLen), "app-" + strings.Repeat("1", runtime.MaxNameLen-4)}
	seen := map[string]string{}
	for _, app := range apps {
		s := ServiceName(app)
		if !dnsLabel.MatchString(s) || s[0] < 'a' || s[0] > 'z' || len(s) > maxDNSLabel {
			t.Errorf("ServiceName(%q) = %q: no RFC 1035 label", app, s)
		}
		if other, ok := seen[s]; ok {
			t.Errorf("ServiceName(%q) = ServiceName(%q) = %q", app, other, s)
		}
		seen[s] = app
	}
	if ServiceName("web") != "web" {
		t.Errorf("ServiceName(web) = %q, want web", ServiceName("web"))
	}
}

func TestServiceOfAnotherAppRefusedAndKept(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName("web"), Namespace: ns,
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a", LabelApp: "someone-else"}}}
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"), other)
	r := fakeRuntime(t, cs, Options{})
	if err := r.ensureService(ctx, "env-a", "web"); !errors.Is(err, runtime.ErrUnsatisfiable) {
		t.Errorf("ensureService over another app's Service = %v, want ErrUnsatisfiable", err)
	}
	if err := r.dropServiceIfUnused(ctx, "env-a", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, ServiceName("web"), metav1.GetOptions{}); err != nil {
		t.Errorf("another app's Service after dropServiceIfUnused: %v, want it kept", err)
	}
	// Its own is made, found again, and dropped.
	if err := r.ensureService(ctx, "env-a", "api"); err != nil {
		t.Fatal(err)
	}
	if err := r.ensureService(ctx, "env-a", "api"); err != nil {
		t.Errorf("ensureService of its own Service again: %v", err)
	}
	if err := r.dropServiceIfUnused(ctx, "env-a", "api"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Get(ctx, ServiceName("api"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("its own unused Service: %v, want it deleted", err)
	}
}

// readyPod is a ready replica of rs.
func readyPod(rs runtime.ReplicaSet, ns, name, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: workloadLabels(rs.Env, rs.App, rs.Version)},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
}

func TestAdoptScaleUpWaitsForTheNewReplicas(t *testing.T) {
	ctx := testCtx(t)
	rs := testReplicaSet()
	rs.Env = "env-a"
	ns := DefaultNamespacePrefix + rs.Env
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: workloadName(rs.App, rs.Version), Namespace: ns, UID: "d1", Labels: workloadLabels(rs.Env, rs.App, rs.Version)},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
	}
	cs := fake.NewClientset(runwayNamespace(ns, rs.Env), d, readyPod(rs, ns, "p1", "10.0.0.1"))
	r := fakeRuntime(t, cs, Options{})
	// The scale-up is accepted, but the cache never sees it (as a slow
	// watch would have it): the one ready replica is not enough.
	cs.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, kruntime.Object, error) { return true, d, nil })
	rs.Replicas, rs.HealthTimeout = 2, 200*time.Millisecond
	if err := r.await(ctx, "the cache", func() (bool, string, error) {
		return r.cache.deployment(ns, rs.App, rs.Version) != nil && len(r.cache.workloadPods(ns, rs.App, rs.Version)) == 1, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	replicas, err := r.adoptDeployment(ctx, "adopting", rs, d)
	if err == nil {
		t.Fatalf("adopting with a scale-up to 2 returned %d replicas before the second existed", len(replicas))
	}
	if n := len(actions(cs, "patch", "deployments", ns)); n != 1 {
		t.Errorf("%d patches, want 1", n)
	}
	// Both there: it returns both.
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, readyPod(rs, ns, "p2", "10.0.0.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rs.HealthTimeout = 10 * time.Second
	replicas, err = r.adoptDeployment(ctx, "adopting", rs, d)
	if err != nil || len(replicas) != 2 {
		t.Errorf("adopting with 2 ready = %v, %v; want 2 replicas", replicas, err)
	}
}

func TestJobKilledByItsDeadlineIsTimedOut(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	job := func(name string) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a"}},
			Spec: batchv1.JobSpec{ActiveDeadlineSeconds: ptr.To[int64](360)}}
	}
	pod := func(job string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: job + "-pod", Namespace: ns, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a", jobLabel: job}},
			Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143}}}}},
		}
		if deleting {
			p.DeletionTimestamp = ptr.To(metav1.Now())
			p.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
		}
		return p
	}
	deadline := job("deadline")
	deadline.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded, Message: "Job was active longer than specified deadline"}}
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"),
		deadline, pod("deadline", false),
		job("deleted"), pod("deleted", true),
		job("exited"), pod("exited", false))
	r := fakeRuntime(t, cs, Options{})
	if err := r.await(ctx, "the cache", func() (bool, string, error) {
		return len(r.cache.jobPods(ns, "deleted")) == 1 && len(r.cache.jobPods(ns, "exited")) == 1 && len(r.cache.jobPods(ns, "deadline")) == 1, "", nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"deadline", "deleted"} {
		if err := r.jobKilled(ctx, job(name)); !errors.Is(err, errJobTimedOut) {
			t.Errorf("jobKilled(%s) = %v, want timed out", name, err)
		}
	}
	if err := r.jobKilled(ctx, job("exited")); err != nil {
		t.Errorf("jobKilled of a job that exited itself = %v, want nil", err)
	}
}

func TestReusedVarsSecretIsNoStray(t *testing.T) {
	ctx := testCtx(t)
	ns := DefaultNamespacePrefix + "env-a"
	lbl := workloadLabels("env-a", "web", "v1")
	old := newSecret(ns, "web-v1", map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a", LabelApp: "web", LabelVersion: "v1", LabelKind: KindVars}, varsData([]string{"A=1"}))
	old.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	stray := newSecret(ns, "web-v0", map[string]string{LabelManagedBy: ManagedBy, LabelEnv: "env-a", LabelKind: KindVars}, nil)
	stray.CreationTimestamp = old.CreationTimestamp
	stray.UID, stray.ResourceVersion = "s0", "7"
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"), old, stray)
	r := fakeRuntime(t, cs, Options{})
	// A retried Start reuses web-v1's Secret, its Deployment not made yet.
	if err := r.ensureVars(ctx, ns, "web-v1", lbl, []string{"A=1"}); err != nil {
		t.Fatal(err)
	}
	if err := r.await(ctx, "the namespace cached", func() (bool, string, error) { return r.cache.namespace(ns) != nil, "", nil }); err != nil {
		t.Fatal(err)
	}
	removed, err := r.CollectStrays(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"env-a/secret/web-v0"}; !slices.Equal(removed, want) {
		t.Errorf("CollectStrays removed %q, want %q", removed, want)
	}
	for _, a := range actions(cs, "delete", "secrets", ns) {
		o := a.(k8stesting.DeleteAction).GetDeleteOptions()
		if o.Preconditions == nil || o.Preconditions.UID == nil || o.Preconditions.ResourceVersion == nil ||
			*o.Preconditions.UID != "s0" || *o.Preconditions.ResourceVersion != "7" {
			t.Errorf("a stray deleted without its UID and resourceVersion as preconditions: %+v", o.Preconditions)
		}
	}
}

func TestLiveDeploymentPausesOnOneBeingDeleted(t *testing.T) {
	ns := DefaultNamespacePrefix + "env-a"
	// Not Runway's labels: the cache never has it.
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web-v1", Namespace: ns, UID: "d1",
		DeletionTimestamp: ptr.To(metav1.Now()), Finalizers: []string{"foregroundDeletion"}}}
	cs := fake.NewClientset(runwayNamespace(ns, "env-a"), d)
	r := fakeRuntime(t, cs, Options{})
	before := len(actions(cs, "get", "deployments", ns))
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := r.liveDeployment(ctx, ns, "web-v1"); err == nil {
		t.Fatal("liveDeployment of one never deleted returned")
	}
	// At the recheck interval, a half-second wait is at most a few Gets
	// (a slow machine makes fewer, never more).
	if n := len(actions(cs, "get", "deployments", ns)) - before; n > 3 {
		t.Errorf("%d Gets of a Deployment being deleted in half a second, want a pause between them", n)
	}
}
