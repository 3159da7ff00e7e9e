"""Operating scorepipe from outside: Prometheus metrics, health endpoints and Pushgateway pushes."""
