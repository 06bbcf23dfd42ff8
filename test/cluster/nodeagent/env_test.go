package nodeagent

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/runway-cd/runway/internal/image"
)

// fakeSources serves Secrets and ConfigMaps from maps.
type fakeSources struct {
	secrets    map[string]map[string][]byte
	configMaps map[string]map[string]string
}

func (f fakeSources) secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	d, ok := f.secrets[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: d}, nil
}

func (f fakeSources) configMap(_ context.Context, ns, name string) (*corev1.ConfigMap, error) {
	d, ok := f.configMaps[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: d}, nil
}

func field(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func TestResolveEnv(t *testing.T) {
	yes := true
	src := fakeSources{
		secrets:    map[string]map[string][]byte{"db": {"DATABASE_URL": []byte("postgres://u:p@h/db"), "token": []byte("s3cret"), "bad-name!": []byte("x")}},
		configMaps: map[string]map[string]string{"cfg": {"MODE": "staging", "PORT": "9000"}},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "runway-env", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "n1", ServiceAccountName: "default"},
		Status:     corev1.PodStatus{PodIP: "127.1.0.9", HostIP: "127.0.0.1"},
	}
	tests := []struct {
		name    string
		c       corev1.Container
		want    []string
		wantErr bool
	}{
		{
			name: "values expanded against earlier ones only",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "POD_IP", ValueFrom: field("status.podIP")},
				{Name: "HOST", Value: "$(POD_IP)"},
				{Name: "URL", Value: "http://$(HOST):$(PORT)"},
				{Name: "PORT", Value: "8080"},
				{Name: "LITERAL", Value: "$$(PORT)"},
			}},
			want: []string{"POD_IP=127.1.0.9", "HOST=127.1.0.9", "URL=http://127.1.0.9:$(PORT)", "PORT=8080", "LITERAL=$(PORT)"},
		},
		{
			name: "downward API fields",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "N", ValueFrom: field("metadata.name")},
				{Name: "NS", ValueFrom: field("metadata.namespace")},
				{Name: "UID", ValueFrom: field("metadata.uid")},
				{Name: "NODE", ValueFrom: field("spec.nodeName")},
				{Name: "HOSTIP", ValueFrom: field("status.hostIP")},
				{Name: "APP", ValueFrom: field("metadata.labels['app']")},
				{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
			}},
			want: []string{"N=web-1", "NS=runway-env", "UID=u-1", "NODE=n1", "HOSTIP=127.0.0.1", "APP=web", "SA=default"},
		},
		{
			name: "valueFrom is not expanded",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "PORT", Value: "1"},
				{Name: "T", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "MODE"}}},
			}},
			want: []string{"PORT=1", "T=staging"},
		},
		{
			name: "envFrom first, prefixed, invalid names skipped, env overrides",
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
					{Prefix: "DB_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}},
				},
				Env: []corev1.EnvVar{
					{Name: "PORT", Value: "$(PORT)1"},
					{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "token"}}},
				},
			},
			want: []string{"MODE=staging", "PORT=90001", "DB_DATABASE_URL=postgres://u:p@h/db", "DB_token=s3cret", "TOKEN=s3cret"},
		},
		{
			name: "optional missing sources skipped",
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: &yes}}},
				Env: []corev1.EnvVar{
					{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "missing", Optional: &yes}}},
					{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: &yes}}},
					{Name: "C", Value: "c"},
				},
			},
			want: []string{"C=c"},
		},
		{
			name: "missing secret",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}},
			}},
			wantErr: true,
		},
		{
			name: "missing key",
			c: corev1.Container{Env: []corev1.EnvVar{
				{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "k"}}},
			}},
			wantErr: true,
		},
		{
			name: "missing configmap for envFrom",
			c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}},
			}},
			wantErr: true,
		},
		{
			name: "resource limits, default from the node",
			c: corev1.Container{
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
				Env: []corev1.EnvVar{
					{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
					{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				},
			},
			want: []string{"MEM_MI=64", "CPU=8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := resolveEnv(t.Context(), src, pod, &tt.c, nodeAllocatable)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("resolveEnv = %v, want an error", env.list())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := env.list(); !slices.Equal(got, tt.want) {
				t.Fatalf("resolveEnv =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestResolveEnvMissingKeyIsConfigError(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}}
	c := &corev1.Container{Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}}
	_, err := resolveEnv(t.Context(), fakeSources{secrets: map[string]map[string][]byte{"s": {}}}, pod, c, nil)
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a configError", err)
	}
}

func TestCommandLine(t *testing.T) {
	env := &environ{}
	env.set("POD_IP", "127.1.0.3")
	env.set("PORT", "8080")
	cfg := image.Config{Entrypoint: []string{"./testapp"}, Cmd: []string{"serve"}}
	tests := []struct {
		name string
		c    corev1.Container
		want []string
	}{
		{name: "image's entrypoint and cmd", want: []string{"./testapp", "serve"}},
		{name: "args replace cmd", c: corev1.Container{Args: []string{"-host", "$(POD_IP)", "job"}}, want: []string{"./testapp", "-host", "127.1.0.3", "job"}},
		{name: "command drops cmd", c: corev1.Container{Command: []string{"./other", "--port=$(PORT)"}}, want: []string{"./other", "--port=8080"}},
		{name: "command and args", c: corev1.Container{Command: []string{"./x"}, Args: []string{"$$(PORT)", "$(NOPE)"}}, want: []string{"./x", "$(PORT)", "$(NOPE)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commandLine(&tt.c, cfg, env); !slices.Equal(got, tt.want) {
				t.Fatalf("commandLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	env := &environ{}
	env.set("HOST", "127.1.0.3")
	env.set("MODE", "prod")
	got := processEnv([]string{"PATH=/usr/bin", "MODE=dev", "LANG=C"}, env, "/host/bin")
	want := []string{"MODE=prod", "LANG=C", "HOST=127.1.0.3", "PATH=/host/bin"}
	if !slices.Equal(got, want) {
		t.Fatalf("processEnv = %q, want %q", got, want)
	}
	env.set("PATH", "/mine")
	if got := processEnv(nil, env, "/host/bin"); !slices.Contains(got, "PATH=/mine") || slices.Contains(got, "PATH=/host/bin") {
		t.Fatalf("processEnv with the container's PATH = %q", got)
	}
}
