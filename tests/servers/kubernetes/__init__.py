"""The Kubernetes API stand-in, in parts; tests import it from ``servers.kubernetes_srv``."""
