// Package argocd renders what makes Argo CD run Runway's method, with
// Runway as the pipeline (`runway export argocd`): Argo CD syncs the
// environments the state repository declares and Argo Rollouts runs the
// canary, as in the original Argo-based system; Runway builds, writes
// the manifests, waits for the reports and runs migrations and tests.
//
// # What is rendered
//
// Render returns the files of one directory, meant to be committed to the
// state repository at Options.ChartPath (default argocd/):
//
//   - applicationset.yaml: an ApplicationSet whose git files generator
//     lists apps/staging/manifests/*.json. Each file makes an Application
//     runway-<env> (env: the file's name, as Runway names environments),
//     with the resources finalizer, automated sync with pruning and
//     foreground propagation. Deleting the file deletes the Application
//     and, by the finalizer, everything it made.
//   - application-production.yaml: production's Application, the same
//     chart over apps/production/manifests/production.json.
//   - charts/environment: the app-of-apps chart of an environment: its
//     Namespace (<prefix><env>, labelled app.kubernetes.io/managed-by=runway
//     and runway.dev/env=<env>, sync wave -1) as one of its own resources,
//     never CreateNamespace=true, so that the namespace is pruned with the
//     rest instead of being left behind empty (argo-cd issues #7875,
//     #4435); and one Application <env>-<app> per app of the manifest.
//     An app the export has no chart for fails the rendering with a
//     message Argo CD shows. Such names can pass 63 characters: Argo CD
//     must track resources by annotation (its default since v3), not by
//     the app.kubernetes.io/instance label.
//   - charts/<app>: an app's Deployment (staging) or Rollout (production,
//     the spec's canary steps and background analysis, weights by replica
//     count, progressDeadlineAbort), its ClusterIP Service, its
//     AnalysisTemplates as written but named <app>-<name> (as the Argo
//     Rollouts driver names them; the Rollout's templateName references
//     follow), so that two apps' templates never meet in the namespace,
//     with prometheus.address set to Options.PrometheusAddress, and its
//     report hooks.
//   - charts/postgres: the environment's PostgreSQL server, a StatefulSet
//     whose volume claim is deleted with it, a headless Service and a
//     PostSync hook that gives each of the environment's apps needing the
//     database a role and a database of its own (passwords from the
//     DatabaseSecret; the environment chart tells it, as value databases,
//     which apps are the environment's, so only their keys are required
//     and another app's missing key does not hold the hook). A team
//     with a PostgreSQL server of its own can instead point apps at it:
//     leave postgres out of the manifests and give each environment's
//     apps a database there (what the Kubernetes runtime does with
//     PostgresAdminURL); the apps' PG* variables then come from run.env.
//   - README.md: the above, for whoever finds the directory.
//
// # How an environment's values reach its manifests
//
// Without plugins: the manifest JSON is valid YAML, so each
// environment's Application gives its file to Helm as a values file
// (helm.valueFiles, a path inside the same repository at the same
// revision), with the environment's name and whether it is production as
// helm.parameters, which the ApplicationSet's goTemplate fills from the
// file's name. The environment chart passes each app's entry on to the
// app's Application as helm.valuesObject: env, production, workflow
// (the entry's deploying_workflow_name, else the manifest's), image and
// version (images.code.image and image_tag), revision (deploy.revision,
// an annotation on the pods) and the pipeline image. An app's image is
// Options.Registry/<app>:<version> when a registry is given, else the
// manifest's own name. Every value from a manifest is printed by Helm's
// quote (a YAML double-quoted string), so none can add a field or a Helm
// action; literal "{{" of the
// spec and the AnalysisTemplates ({{args.env}}) are escaped.
//
// # Reports
//
// Each app's chart has a PostSync hook Job, run once every resource of
// the sync is healthy (Argo CD's health of a Rollout is Healthy once its
// canary completed, Degraded once aborted, which fails the sync), that
// reports success to Runway's reporter in the original
// workflow-reporter's shape (POST <ReporterURL>/workflow/update
// {"WorkflowName", "App", "Success", "Message"}), and a SyncFail hook
// that reports failure. They authenticate with the workflow's own token
// ("Authorization: Bearer", see reporter.Reporter.Token), read from the
// environment's Secret ReporterSecret at the key named after the
// workflow, never written in a manifest. A hook's pod waits for its key
// to appear, up to the Job's deadline.
//
// An app's Application has no sync retry (the environments' own
// Applications, which have no hooks, keep theirs): gitops-engine runs
// SyncFail hooks inside the failed attempt, before Argo CD would retry,
// so with a retry the reporter would already hold a failure, final for
// Runway, that the retry might turn into a success. A failed sync is
// reported once; a later sync reports again.
//
// # A runtime: argocd mode
//
// ReporterSecretObject, DatabaseSecretObject and NamespaceObject give
// what a Runway server driving Argo CD would write itself (the lead wires
// the mode): the pipeline commits the staging manifest as it does
// locally, creates the environment's namespace (Argo CD adopts it, and
// deletes it with the environment) with the two Secrets (the tokens of the
// workflows the manifest names, fresh database passwords), and waits on
// the hooks' reports instead of creating resources; migrations and tests
// still run as Jobs of the Kubernetes runtime. Promotion writes production's
// manifest; Argo CD syncs the Rollout, and its hooks report the canary's
// outcome. On a failed report Runway reverts production's manifest in
// git as it does locally, and Argo CD syncs the revert.
package argocd
