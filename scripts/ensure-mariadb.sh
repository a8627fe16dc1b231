#!/usr/bin/env bash
# Makes sure a MariaDB/MySQL server answers on 127.0.0.1:3306 (root, empty password), starting
# or installing the Debian package if needed. Tests create their own databases.
set -euo pipefail

ping_db() {
  if command -v mariadb-admin >/dev/null; then
    mariadb-admin --protocol=tcp -h127.0.0.1 -P3306 -uroot ping >/dev/null 2>&1
  elif command -v mysqladmin >/dev/null; then
    mysqladmin --protocol=tcp -h127.0.0.1 -P3306 -uroot ping >/dev/null 2>&1
  else
    (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null
  fi
}

if ping_db; then
  echo "MariaDB answers on 127.0.0.1:3306"
  exit 0
fi

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi

echo "starting MariaDB"
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
for _ in $(seq 1 60); do
  ping_db && { echo "MariaDB is up"; exit 0; }
  sleep 1
done
echo "MariaDB did not come up on 127.0.0.1:3306 within 60 s; check its error log" >&2
exit 1
