#!/usr/bin/env bash
# What `npm test` needs beyond node_modules, installed where it can be (npm runs this as `pretest`;
# .ci/run runs it too):
#   - Mesa 25's lavapipe, a Vulkan driver that runs on the CPU, so that WebGPU code (onnxruntime-node's
#     WebGPU EP, Dawn's `webgpu` package) runs without a GPU. Debian 12's own Mesa 22.3 is too old
#     for Dawn; bookworm-backports has 25.x. The backports suite is derived from the machine's own
#     Debian source, so no mirror is named. vitest.config.ts points VK_ICD_FILENAMES at its ICD.
#   - Chromium at /usr/bin/chromium (Debian's package): the HTML report tests load pages in it
#     through playwright-core, which downloads no browser.
# When both are there it prints nothing and exits 0 at once. When something is missing it installs
# it with apt-get as root or through passwordless sudo; otherwise (not root, no passwordless sudo,
# no apt-get, or FUSEGEN_PROVISION=check) it prints ONE line saying what to install and exits 1.
# Environment: FUSEGEN_PROVISION=check never installs; FUSEGEN_LVP_ICD and FUSEGEN_CHROMIUM
# override the paths checked (tests use them to simulate a bare machine).
set -euo pipefail
icd=${FUSEGEN_LVP_ICD:-/usr/share/vulkan/icd.d/lvp_icd.json}
chromium=${FUSEGEN_CHROMIUM:-/usr/bin/chromium}
self="scripts/provision.sh"

# Mesa's version as dpkg knows it, empty where dpkg does not (Mesa built from source, other distros).
mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
lavapipe_ok() {
  [ -f "$icd" ] || return 1
  local v; v=$(mesa_version)
  [ -z "$v" ] || [ "${FUSEGEN_LVP_ICD:-}" ] || [[ "$v" =~ ^([0-9]+:)?(2[5-9]|[3-9][0-9]) ]]
}
chromium_ok() { [ -x "$chromium" ]; }

missing=()
lavapipe_ok || missing+=(lavapipe)
chromium_ok || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

# One line: what is missing and how to install it.
fail() {
  local what=()
  for m in "${missing[@]}"; do
    case $m in
      lavapipe) what+=("Mesa >= 25 lavapipe ($icd${1:+; }${1:-}; Debian 12: mesa-vulkan-drivers libvulkan1 from bookworm-backports)") ;;
      chromium) what+=("Chromium at $chromium (Debian: apt-get install chromium)") ;;
    esac
  done
  local joined; joined=$(printf '%s and ' "${what[@]}"); joined=${joined% and }
  echo "npm test needs ${joined}: run \`sudo bash $self\` (Debian/Ubuntu) or install them yourself${2:+ ($2)}" >&2
  exit 1
}

mv=$(mesa_version)
reason=""
[ -n "$mv" ] && [ -f "$icd" ] && reason="installed: $mv, too old"
[ "${FUSEGEN_PROVISION:-}" = check ] && fail "$reason" "FUSEGEN_PROVISION=check"
command -v apt-get >/dev/null 2>&1 || fail "$reason" "no apt-get here"
if [ "$(id -u)" -ne 0 ]; then
  # Passwordless sudo: run this script as root; anything else: say what to install.
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n FUSEGEN_PROVISION=install bash "$0"
  fi
  fail "$reason" "not root and no passwordless sudo"
fi

# Root from here on: install what is missing.
. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
echo "provision: installing ${missing[*]} for the WebGPU and HTML report tests (apt-get, ${PRETTY_NAME:-$ID})" >&2
suite=()
if [[ " ${missing[*]} " == *" lavapipe "* ]] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  src=/etc/apt/sources.list.d/debian.sources
  bpo=/etc/apt/sources.list.d/backports.sources
  if [ ! -f "$bpo" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    [ -f "$src" ] || { echo "provision: no $src to derive the bookworm-backports source from" >&2; exit 1; }
    # Take the stanza that carries bookworm-updates and point it at bookworm-backports.
    awk 'BEGIN{RS=""; ORS="\n\n"} /Suites:[^\n]*bookworm-updates/ {sub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print}' "$src" > "$bpo"
    [ -s "$bpo" ] || { rm -f "$bpo"; echo "provision: could not derive a bookworm-backports source from $src" >&2; exit 1; }
  fi
  suite=(-t bookworm-backports)
fi
apt-get update -qq
for m in "${missing[@]}"; do
  case $m in
    lavapipe) apt-get install -y -qq --no-install-recommends "${suite[@]}" mesa-vulkan-drivers libvulkan1 >/dev/null || true ;;
    chromium) apt-get install -y -qq --no-install-recommends chromium >/dev/null || true ;;
  esac
done
missing=()
lavapipe_ok || missing+=(lavapipe)
chromium_ok || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] || fail "installed: $(mesa_version)" "apt-get did not provide them"
echo "provision: lavapipe (mesa-vulkan-drivers $(mesa_version), $icd) and $("$chromium" --version 2>/dev/null || echo chromium) ready" >&2
