"""Deployment as code: render the Kubernetes overlays in infra/k8s (a kustomize subset, for machines
without kubectl) and size the query servers from a published index manifest."""
