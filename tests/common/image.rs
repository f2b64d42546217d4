//! The test image: Debian's static busybox in a `FROM scratch` image, built through the daemon
//! API from an in-memory context when missing. Tests never rely on it pre-existing (nothing can
//! be pulled here); `scripts/build-test-image.sh` builds the very same image with the CLI.

use std::path::PathBuf;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use tokio::sync::OnceCell;

/// The image every test runs: busybox applets under `/bin`, `CMD ["/bin/sh"]`.
pub const TEST_IMAGE: &str = "dockwright-test/busybox:latest";

/// Same Dockerfile as `scripts/build-test-image.sh`.
const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
CMD [\"/bin/sh\"]\n";

/// Make sure [`TEST_IMAGE`] exists, building it once per test binary if not. Parallel callers
/// wait for the one build (a `OnceCell` shared across the tests' runtimes).
pub async fn ensure_test_image() {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY.get_or_init(build_if_missing).await;
}

/// [`ensure_test_image`] for synchronous tests: runs it on a short-lived runtime of its own
/// thread, so it is safe to call from inside another runtime too.
pub fn ensure_test_image_blocking() {
    std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime")
            .block_on(ensure_test_image())
    })
    .join()
    .expect("building the test image panicked");
}

async fn build_if_missing() {
    let docker = super::docker().await;
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return;
    }
    let busybox_path = PathBuf::from(
        std::env::var("DOCKWRIGHT_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into()),
    );
    let busybox = std::fs::read(&busybox_path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (install Debian's busybox-static: scripts/test.sh does)",
            busybox_path.display()
        )
    });
    assert!(
        is_static_elf(&busybox),
        "{} is not a static executable: a FROM scratch image needs busybox-static, not busybox",
        busybox_path.display()
    );

    let context = context_tar(&busybox);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(TEST_IMAGE)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut log = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => log.push_str(info.stream.as_deref().unwrap_or_default()),
            Err(e) => panic!("build {TEST_IMAGE}: {e}\n{log}"),
        }
    }
    docker
        .inspect_image(TEST_IMAGE)
        .await
        .unwrap_or_else(|e| panic!("{TEST_IMAGE} missing after its build: {e}\n{log}"));
}

/// The build context: the Dockerfile and the busybox binary, with fixed metadata so repeated
/// builds hit the daemon's layer cache.
fn context_tar(busybox: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, mode, data) in [
        ("Dockerfile", 0o644, DOCKERFILE.as_bytes()),
        ("busybox", 0o755, busybox),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
            .expect("append to an in-memory tar");
    }
    tar.into_inner().expect("finish an in-memory tar")
}

/// True for an x86-64/aarch64 ELF64 executable without a `PT_INTERP` program header, i.e. one
/// that needs no dynamic loader (which a FROM scratch image does not have).
fn is_static_elf(bin: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| bin.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        bin.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bin.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // ELF magic, 64-bit class, little endian.
    if bin.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum as usize).all(|i| u32_at(phoff as usize + i * phentsize as usize) != Some(PT_INTERP))
}

/// `dockerfile` with `LABEL dwtest.layers=<tag>` after every `FROM` of the test image, so the
/// build's layers are its own. Tests build side by side, and removing one test's image removes
/// its untagged parents too: a build of another test that shares those steps, using them as
/// its cache at that moment, then fails with "unknown parent image ID". `tag`: anything unique
/// to the test (its owner name).
pub fn own_layers(dockerfile: &str, tag: &str) -> String {
    let mut out = String::with_capacity(dockerfile.len() + 64);
    for line in dockerfile.lines() {
        out.push_str(line);
        out.push('\n');
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
            && words.next() == Some(TEST_IMAGE)
        {
            out.push_str(&format!("LABEL dwtest.layers={tag}\n"));
        }
    }
    out
}
