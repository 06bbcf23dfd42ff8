package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/runway-cd/runway/internal/image"
	"github.com/runway-cd/runway/internal/runtime"
)

// jobTTL is how long a finished Job stays for an operator to look at,
// where the cluster runs the ttl-after-finished controller; RunJob
// deletes its Job itself once it has its logs and exit status.
const jobTTL = 10 * time.Minute

// jobLabel is the label the Job controller gives a Job's pods.
const jobLabel = "batch.kubernetes.io/job-name"

// RunJob implements runtime.Jobs with a batch/v1 Job of one pod that runs
// once (backoffLimit 0, restartPolicy Never), its variables in a Secret
// the Job owns. The pod's log is streamed into j.Log (pods/log, follow)
// as it runs. A non-zero exit is an error "exit status N"; past Timeout,
// counted from the container's start, or when ctx ends, the Job is
// deleted with its pod (foreground), and RunJob returns once the pod is
// gone. The Job's activeDeadlineSeconds is Timeout plus
// jobStartAllowance, so that the cluster ends it even if Runway is gone.
func (r *Runtime) RunJob(ctx context.Context, j runtime.Job) error {
	if err := runtime.CheckName("environment", j.Env); err != nil {
		return fmt.Errorf("running a job: %w", err)
	}
	if j.App != "" {
		if err := runtime.CheckName("app", j.App); err != nil {
			return fmt.Errorf("running a job: %w", err)
		}
	}
	what := fmt.Sprintf("job %s in %s", j.Name, j.Env)
	if j.App != "" {
		what = fmt.Sprintf("job %s of %s in %s", j.Name, j.App, j.Env)
	}
	if len(j.Command) == 0 {
		return fmt.Errorf("%s: no command", what)
	}
	if j.Log == nil {
		j.Log = io.Discard
	}
	imageName := j.App
	if imageName == "" {
		imageName = "job"
	}
	ref, err := r.builds.build(ctx, imageName, "job-"+hashHex(j.Dir)[:12], j.Dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := r.ensureNamespace(ctx, j.Env, nil); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	job, err := r.createJob(ctx, j, ref)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	key := job.Namespace + "/" + job.Name
	defer func() {
		r.mu.Lock()
		delete(r.jobs, key)
		r.mu.Unlock()
	}()
	if err := r.followJob(ctx, j, job); err != nil {
		// Timed out, cancelled, or lost: followJob ended it.
		return fmt.Errorf("%s: %w", what, err)
	}
	// Done: logs and exit status are had; nothing of it runs.
	exit := r.jobExit(job)
	var killed error
	if exit != 0 {
		killed = r.jobKilled(ctx, job)
	}
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if derr := r.deleteJob(cctx, job, false); derr != nil {
		r.log.Warn("deleting a finished job", "namespace", job.Namespace, "job", job.Name, "err", derr)
	}
	if killed != nil {
		return fmt.Errorf("%s: %w", what, killed)
	}
	if exit != 0 {
		return fmt.Errorf("%s: exit status %d", what, exit)
	}
	return nil
}

// jobKilled says, of a Job whose pod ended with a failure, whether the
// cluster ended it (its activeDeadlineSeconds passed: the Job's
// DeadlineExceeded condition, or the pod's own reason, or the pod deleted
// under it): an error wrapping errJobTimedOut then, else nil (its own
// exit).
func (r *Runtime) jobKilled(ctx context.Context, job *batchv1.Job) error {
	for _, p := range r.cache.jobPods(job.Namespace, job.Name) {
		if p.Status.Reason == batchv1.JobReasonDeadlineExceeded {
			return fmt.Errorf("%w after its deadline: %s", errJobTimedOut, p.Status.Message)
		}
		if p.DeletionTimestamp != nil {
			return fmt.Errorf("%w: its pod %s was ended by the cluster (the Job's deadline, %s)", errJobTimedOut, p.Name, jobDeadline(job))
		}
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), liveTimeout)
	defer cancel()
	cur, err := r.cs.BatchV1().Jobs(job.Namespace).Get(lctx, job.Name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	for _, c := range cur.Status.Conditions {
		if (c.Type == batchv1.JobFailed || c.Type == batchv1.JobFailureTarget) && c.Status == corev1.ConditionTrue &&
			c.Reason == batchv1.JobReasonDeadlineExceeded {
			return fmt.Errorf("%w after its deadline: %s", errJobTimedOut, c.Message)
		}
	}
	return nil
}

// jobDeadline is the Job's activeDeadlineSeconds as a duration, for
// messages.
func jobDeadline(job *batchv1.Job) string {
	if job.Spec.ActiveDeadlineSeconds == nil {
		return "none"
	}
	return (time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second).String()
}

// createJob makes the Job of j (a unique name) and the Secret of its
// variables, which the Job owns; it records the Job as followed, so that
// CollectStrays leaves it alone.
func (r *Runtime) createJob(ctx context.Context, j runtime.Job, ref string) (*batchv1.Job, error) {
	ns := r.Namespace(j.Env)
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	base := j.App
	if base == "" {
		base = "job"
	}
	name := shorten(labelValue(base+"-"+j.Name, maxDNSLabel-7), maxDNSLabel-7) + "-" + hex.EncodeToString(suffix)
	lbl := map[string]string{LabelManagedBy: ManagedBy, LabelEnv: j.Env, LabelJob: labelValue(j.Name, maxDNSLabel)}
	if j.App != "" {
		lbl[LabelApp] = j.App
	}
	key := ns + "/" + name
	r.mu.Lock()
	r.jobs[key] = true
	r.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			r.mu.Lock()
			delete(r.jobs, key)
			r.mu.Unlock()
		}
	}()
	if err := r.ensureVars(ctx, ns, name, lbl, j.Vars); err != nil {
		return nil, err
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			Parallelism:             ptr.To[int32](1),
			Completions:             ptr.To[int32](1),
			TTLSecondsAfterFinished: ptr.To(int32(jobTTL / time.Second)),
			Template:                jobPodTemplate(j, ref, name, lbl),
		},
	}
	if j.Timeout > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To(int64(seconds(j.Timeout + jobStartAllowance)))
	}
	created, err := r.cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if unreachable(err) {
			// It may have been made all the same (the name is this
			// call's own): delete it, if so.
			bg := metav1.DeletePropagationBackground
			if derr := r.cs.BatchV1().Jobs(ns).Delete(cctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); derr != nil && !apierrors.IsNotFound(derr) {
				r.log.Warn("deleting a Job whose creation failed", "namespace", ns, "job", name, "err", derr)
			}
		}
		_ = r.cs.CoreV1().Secrets(ns).Delete(cctx, name, metav1.DeleteOptions{})
		return nil, apiError("creating Job "+ns+"/"+name, err)
	}
	ok = true
	owner := ownerRef(batchv1.SchemeGroupVersion.WithKind("Job"), created.Name, created.UID)
	if err := r.addOwner(ctx, ns, name, owner); err != nil {
		r.log.Warn("making a Job the owner of its Secret", "namespace", ns, "job", name, "err", err)
	}
	return created, nil
}

// jobPodTemplate is the pod of a job: run once, unprivileged, with the
// job's variables from its Secret.
func jobPodTemplate(j runtime.Job, ref, secret string, lbl map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: lbl},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:                     containerName,
				Image:                    ref,
				WorkingDir:               image.AppDir,
				Command:                  slices.Clone(j.Command),
				Env:                      podEnv(j.Env, j.App),
				EnvFrom:                  []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}},
				ImagePullPolicy:          corev1.PullIfNotPresent,
				TerminationMessagePath:   corev1.TerminationMessagePathDefault,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				SecurityContext:          containerSecurity(),
			}},
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			DNSPolicy:                     corev1.DNSClusterFirst,
			SchedulerName:                 corev1.DefaultSchedulerName,
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			SecurityContext:               podSecurity(),
		},
	}
}

// errJobTimedOut is a job that ran past its Timeout.
var errJobTimedOut = errors.New("timed out")

const (
	// jobStartAllowance is how much longer than its Timeout a Job may
	// take, as its activeDeadlineSeconds, for its pod to be scheduled and
	// its image pulled: RunJob counts Timeout from the container's start,
	// as a local job's from its process's; the deadline, which the
	// cluster enforces even when Runway is gone, from the Job's.
	jobStartAllowance = 5 * time.Minute
	// logDrain bounds the wait for the rest of a job's log once its
	// container has ended.
	logDrain = 10 * time.Second
)

// followJob waits for the Job's pod to start, streams its log into
// j.Log, and waits for the pod to finish. Past j.Timeout counted from
// the container's start (or when ctx ends) it deletes the Job with its
// pod, lets the log stream take what was written, and fails ("timed
// out"). It fails too when the Job fails with no pod that ran.
func (r *Runtime) followJob(ctx context.Context, j runtime.Job, job *batchv1.Job) error {
	pod, err := r.awaitJobPod(ctx, job, func(p *corev1.Pod) bool {
		cs := appContainer(p.Status.ContainerStatuses)
		return cs != nil && (cs.State.Running != nil || cs.State.Terminated != nil) || podDone(p)
	})
	if err != nil {
		return r.endJob(ctx, job, err)
	}
	runCtx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	if j.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeoutCause(runCtx, j.Timeout, fmt.Errorf("%w after %s: ended, with its pod", errJobTimedOut, j.Timeout))
		defer cancel()
	}
	// The stream outlives runCtx: once the pod is ended, it ends with
	// everything the job wrote.
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	streamed := make(chan error, 1)
	go func() { streamed <- r.streamLog(streamCtx, pod, j.Log) }()

	_, err = r.awaitJobPod(runCtx, job, podDone)
	if err != nil {
		err = r.endJob(ctx, job, jobCause(runCtx, err))
	}
	select {
	case serr := <-streamed:
		if serr != nil {
			r.log.Warn("streaming a job's log", "namespace", pod.Namespace, "pod", pod.Name, "err", serr)
		}
	case <-time.After(logDrain):
		cancelStream()
		r.log.Warn("a job's log stream did not end with its pod", "namespace", pod.Namespace, "pod", pod.Name)
		// The stream writes j.Log until it returns: wait for it, so
		// nothing is written after RunJob returns (bounded: a stream
		// that ignores its cancelling is given up on, and logged).
		select {
		case <-streamed:
		case <-time.After(logDrain):
			r.log.Error("a job's log stream did not end when cancelled; it may still write the job's log", "namespace", pod.Namespace, "pod", pod.Name)
		}
	}
	return err
}

// endJob deletes the Job and waits for its pod to be gone, and returns
// why (err), with a failure to end it.
func (r *Runtime) endJob(ctx context.Context, job *batchv1.Job, err error) error {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	if derr := r.deleteJob(cctx, job, true); derr != nil {
		return fmt.Errorf("%w; ending it: %w", err, derr)
	}
	return err
}

// jobCause is err, or the cause of ctx's end when it timed out.
func jobCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errJobTimedOut) {
		return cause
	}
	return err
}

// podDone reports whether a job's pod has finished.
func podDone(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// awaitJobPod waits until the Job's pod satisfies cond; it fails when the
// Job fails with no pod that satisfies it (the deadline passed before the
// pod ran, the pod could not be made).
func (r *Runtime) awaitJobPod(ctx context.Context, job *batchv1.Job, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var found *corev1.Pod
	lastCheck := time.Now()
	err := r.await(ctx, "the pod of Job "+job.Namespace+"/"+job.Name, func() (bool, string, error) {
		for _, p := range r.cache.jobPods(job.Namespace, job.Name) {
			if cond(p) {
				found = p
				return true, "", nil
			}
		}
		if time.Since(lastCheck) < recheck {
			return false, "", nil
		}
		lastCheck = time.Now()
		cur, err := r.cs.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return false, "", fmt.Errorf("the Job %s/%s was deleted while running", job.Namespace, job.Name)
		case err != nil:
			return false, "", nil // asked again at the next check
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				if c.Reason == batchv1.JobReasonDeadlineExceeded {
					return false, "", fmt.Errorf("%w after its deadline: %s", errJobTimedOut, c.Message)
				}
				return false, "", fmt.Errorf("the Job %s/%s failed: %s: %s", job.Namespace, job.Name, c.Reason, c.Message)
			}
		}
		return false, "pod not there yet", nil
	})
	return found, err
}

// streamLog copies the pod's container log to w until the container
// ends (pods/log with follow) or ctx ends.
func (r *Runtime) streamLog(ctx context.Context, p *corev1.Pod, w io.Writer) error {
	rc, err := r.cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: containerName, Follow: true}).Stream(ctx)
	if err != nil {
		return apiError("streaming the log of pod "+p.Namespace+"/"+p.Name, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("streaming the log of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// jobExit is the exit code of the Job's pod's container, from the cache
// (awaitJobPod saw it done); -1 when none is known.
func (r *Runtime) jobExit(job *batchv1.Job) int {
	for _, p := range r.cache.jobPods(job.Namespace, job.Name) {
		if cs := appContainer(p.Status.ContainerStatuses); cs != nil && cs.State.Terminated != nil {
			return int(cs.State.Terminated.ExitCode)
		}
		if p.Status.Phase == corev1.PodSucceeded {
			return 0
		}
	}
	return -1
}

// deleteJob deletes a Job and (by the garbage collector) its pod and
// Secret; with wait, foreground, returning once its pods are gone.
func (r *Runtime) deleteJob(ctx context.Context, job *batchv1.Job, wait bool) error {
	policy := metav1.DeletePropagationBackground
	if wait {
		policy = metav1.DeletePropagationForeground
	}
	err := r.cs.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError("deleting Job "+job.Namespace+"/"+job.Name, err)
	}
	if err := r.cs.CoreV1().Secrets(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return apiError("deleting Secret "+job.Namespace+"/"+job.Name, err)
	}
	if !wait {
		return nil
	}
	sel := labels.SelectorFromSet(map[string]string{jobLabel: job.Name}).String()
	return r.await(ctx, "the pod of Job "+job.Namespace+"/"+job.Name+" to be gone", func() (bool, string, error) {
		if n := len(r.cache.jobPods(job.Namespace, job.Name)); n > 0 {
			return false, fmt.Sprintf("%d pods cached", n), nil
		}
		pods, err := r.cs.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, "", apiError("listing the pods of Job "+job.Namespace+"/"+job.Name, err)
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items)), nil
	})
}
