#!/bin/sh
# Writes definitions.json from its template with the passwords of the environment (.env), then starts
# RabbitMQ with the image's own entry point. The passwords may hold letters, digits, "-" and "_" only.
set -eu
for name in RABBITMQ_ADMIN_PASSWORD COLMENA_SERVIDOR_AMQP_PASSWORD COLMENA_WORKER_AMQP_PASSWORD; do
  eval "value=\${$name:-}"
  case "$value" in
    "" | *[!A-Za-z0-9_-]*)
      echo "colmena: $name debe estar definida en .env (letras, cifras, - y _)" >&2
      exit 2
      ;;
  esac
done
mkdir -p /tmp/colmena
sed -e "s/__RABBITMQ_ADMIN_PASSWORD__/${RABBITMQ_ADMIN_PASSWORD}/" \
  -e "s/__COLMENA_SERVIDOR_AMQP_PASSWORD__/${COLMENA_SERVIDOR_AMQP_PASSWORD}/" \
  -e "s/__COLMENA_WORKER_AMQP_PASSWORD__/${COLMENA_WORKER_AMQP_PASSWORD}/" \
  /etc/colmena/definitions.template.json >/tmp/colmena/definitions.json
chmod 600 /tmp/colmena/definitions.json
# The image runs RabbitMQ as the rabbitmq user: it must be able to read the file.
if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq /tmp/colmena; fi
exec docker-entrypoint.sh rabbitmq-server
