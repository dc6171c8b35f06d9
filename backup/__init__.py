"""mqtt-estate-backup: backups of a mosquitto broker's persistence file to S3, and its recovery at start.

The same program is the broker pod's `backup` sidecar (`agent`: SIGUSR1, then upload the saved mosquitto.db) and
its `restore` initContainer (`init`: restore a requested backup, a lost volume, or a corrupt database before
mosquitto starts); `list` shows an operator the backups of a pod. Image: backup/Dockerfile. Issue 15.

Modules, one idea each: dbfile (is this a mosquitto.db mosquitto 2.0 will load), store (the bucket), agent (the
sidecar loop and its metrics), restore (the init's three paths), config (the environment), __main__ (the CLI).
The package imports only the standard library at import time (boto3 and paho-mqtt when first used), and only
relative imports, so it runs as `mqtt_estate.backup` from this repository and from the image alike.
"""
