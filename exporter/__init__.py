"""mosquitto-exporter: Prometheus metrics from one mosquitto broker's `$SYS` tree, over MQTT.

The same program runs as the sidecar of every broker and cloud-bridge pod (its image: exporter/Dockerfile) and in
this project's tests against real mosquitto. It reads the broker over the pod's loopback health listener, so no
credentials travel; for a broker elsewhere it verifies the server's certificate and reads a password from a file.
"""
