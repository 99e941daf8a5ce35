# Shared by the scripts: install what the build needs on Debian/Ubuntu when it
# is missing, and point the rocksdb crate at the system RocksDB.

# Packages the build needs: libclang for bindgen (rocksdb bindings) and
# RocksDB itself, linked from the system instead of an hour-long C++ build.
SOU_APT_PACKAGES=(libclang-dev librocksdb-dev pkg-config)

ensure_system_deps() {
  local missing=()
  for p in "${SOU_APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
      sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
  # The workspace's rust-version: AVX-512 code in curve25519-dalek needs it.
  local minor
  minor="$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')"
  if [ "${minor:-0}" -lt 89 ] 2>/dev/null; then
    echo "error: Rust 1.89 or newer is needed ($(rustc --version)); run: rustup update stable" >&2
    exit 1
  fi
  local multiarch
  multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  export ROCKSDB_LIB_DIR="${ROCKSDB_LIB_DIR:-/usr/lib/$multiarch}"
  export ROCKSDB_INCLUDE_DIR="${ROCKSDB_INCLUDE_DIR:-/usr/include}"
}
