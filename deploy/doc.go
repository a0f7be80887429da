// Package deploy holds no code: it is the home of the deployment files
// (container images, systemd units, the reference cluster, Prometheus rules,
// the Grafana dashboard) and of the tests that check them with the real
// tools: podman, systemd-analyze, haproxy, promtool, and a running server.
package deploy
