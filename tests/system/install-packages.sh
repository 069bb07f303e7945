#!/usr/bin/env bash
# Installs the Debian packages the system tests need: Chromium (MLflow UI test),
# SLURM + munge (cluster test), PostgreSQL (shared-storage test) and R with pROC
# (the DeLong test is checked against pROC::roc.test).
# Runs only as root with apt-get; elsewhere it says so and the tests that need
# these packages skip with that reason. MEDFLOW_SYSTEM_PACKAGES=0 opts out.
set -euo pipefail

packages=(chromium slurm-wlm munge postgresql r-base-core r-cran-proc)

if [[ "${MEDFLOW_SYSTEM_PACKAGES:-1}" == "0" ]]; then
  echo "system packages: skipped (MEDFLOW_SYSTEM_PACKAGES=0)"
  exit 0
fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null; then
  echo "system packages: not root or no apt-get; the browser, SLURM, PostgreSQL and pROC tests will skip"
  exit 0
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the package scripts from starting services: the tests start their own daemons.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
