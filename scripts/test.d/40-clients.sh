# S3 clients the end-to-end tests drive besides boto3 and the aws CLI (which pip installs).
ensure_apt_packages rclone
