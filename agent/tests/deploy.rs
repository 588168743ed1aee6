//! Writing images end to end on files standing in for disks: a loopback
//! HTTP server (and a CONNECT proxy), real qcow2 images from `qemu-img`,
//! the `write_image` step with a fake `/sys/block`, checksums, configdrive,
//! and the refusals that must leave the disk untouched.

use ipa_agent::deploy::checksum::{Algo, Expected, Hasher};
use ipa_agent::deploy::download::Source;
use ipa_agent::deploy::format::Format;
use ipa_agent::deploy::settings::{Download, Settings};
use ipa_agent::deploy::target::Target;
use ipa_agent::deploy::{DeployError, write};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves `files` (path → bytes) on 127.0.0.1; records request heads;
/// `/fail500` answers 500, anything unknown 404.
struct Server {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn serve(files: Vec<(&str, Vec<u8>)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let files: Arc<Vec<(String, Vec<u8>)>> =
        Arc::new(files.into_iter().map(|(p, b)| (p.to_string(), b)).collect());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let rec = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (files, rec) = (files.clone(), rec.clone());
            std::thread::spawn(move || answer(conn, &files, &rec));
        }
    });
    Server { url, heads }
}

fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

fn answer(conn: TcpStream, files: &[(String, Vec<u8>)], rec: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let head = read_head(&mut r);
    rec.lock().unwrap().push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = path
        .rsplit_once("://")
        .map(|(_, p)| {
            p.split_once('/')
                .map(|x| format!("/{}", x.1))
                .unwrap_or_default()
        })
        .unwrap_or(path);
    let mut w = conn;
    match files.iter().find(|(p, _)| *p == path) {
        Some((_, body)) => {
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = w.write_all(body);
        }
        None if path == "/fail500" => {
            let _ = write!(
                w,
                "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        None => {
            let _ = write!(
                w,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

/// A CONNECT proxy that sends every tunnel to `upstream` (whatever host
/// was asked for) and records the CONNECT lines.
fn connect_proxy(upstream: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (up, rec) = (upstream.clone(), rec.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let head = read_head(&mut r);
                rec.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                let server = TcpStream::connect(up.trim_start_matches("http://")).unwrap();
                let mut c = conn;
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let mut s2 = server.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut r, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut server, mut c2) = (server, c.try_clone().unwrap());
                let _ = std::io::copy(&mut server, &mut c2);
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (url, seen)
}

fn sha256(b: &[u8]) -> String {
    let mut h = Hasher::new(Algo::Sha256);
    h.update(b);
    h.hex()
}

fn quick() -> Settings {
    Settings {
        download: Download {
            retries: 1,
            retry_interval: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(10),
            max_duration: None,
        },
        ..Settings::default()
    }
}

/// A disk-like file of `size` bytes filled with 0xAB.
fn disk(dir: &Path, name: &str, size: usize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0xABu8; size]).unwrap();
    p
}

/// A raw "disk image": a DOS table, data in some places, zeros elsewhere.
fn raw_image(size: usize) -> Vec<u8> {
    let mut img = vec![0u8; size];
    for (i, b) in img.iter_mut().enumerate().skip(1 << 20).take(3 << 20) {
        *b = (i * 7 % 251) as u8;
    }
    img[size - 70_000..size - 60_000].fill(0x5a);
    img[446 + 4] = 0x83;
    img[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img
}

fn qemu_img(args: &[&str]) {
    let st = Command::new("qemu-img")
        .args(args)
        .status()
        .expect("qemu-img (Debian qemu-utils) is needed");
    assert!(st.success(), "qemu-img {args:?}");
}

/// `raw` converted by qemu-img with `extra` options.
fn qcow2_of(dir: &Path, raw: &[u8], extra: &[&str]) -> Vec<u8> {
    let src = dir.join("src.raw");
    let dst = dir.join("out.qcow2");
    std::fs::write(&src, raw).unwrap();
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src.to_str().unwrap(), dst.to_str().unwrap()]);
    qemu_img(&args);
    std::fs::read(&dst).unwrap()
}

fn write_url(
    t: &Target,
    url: &str,
    hex: &str,
    claimed: Option<&str>,
    src: &Source,
) -> Result<(Format, u64), DeployError> {
    let expected = Expected {
        algo: Algo::Sha256,
        hex: hex.into(),
    };
    write::write_with_retries(t, &quick(), src, &[url.to_string()], &expected, claimed, 0)
}

/// Serves `bytes`, writes them to a fresh `disk_size`-byte disk file with
/// the expected `hex` digest; returns the server, the disk and the outcome.
fn serve_and_write(
    dir: &Path,
    bytes: &[u8],
    disk_size: usize,
    hex: &str,
    claimed: Option<&str>,
) -> (Server, PathBuf, Result<(Format, u64), DeployError>) {
    let s = serve(vec![("/image", bytes.to_vec())]);
    let p = disk(dir, "vda", disk_size);
    let t = Target::open(&p).unwrap();
    let r = write_url(
        &t,
        &format!("{}/image", s.url),
        hex,
        claimed,
        &Source::default(),
    );
    (s, p, r)
}

#[test]
fn raw_image_streams_to_the_disk_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let img = raw_image(6 << 20);
    let (_s, p, got) = serve_and_write(d.path(), &img, 16 << 20, &sha256(&img), Some("raw"));
    let got = got.unwrap();
    assert_eq!(got, (Format::Raw, img.len() as u64));
    let on_disk = std::fs::read(&p).unwrap();
    assert_eq!(&on_disk[..img.len()], &img[..]);
    assert!(
        on_disk[(15 << 20)..].iter().all(|b| *b == 0),
        "the old end of the disk is cleared"
    );
}

#[test]
fn qcow2_from_qemu_img_plain_and_compressed_matches_the_raw_image() {
    let d = tempfile::tempdir().unwrap();
    let img = raw_image(8 << 20);
    for extra in [&[][..], &["-c"][..], &["-o", "cluster_size=4096"][..]] {
        let q = qcow2_of(d.path(), &img, extra);
        let (_s, p, got) = serve_and_write(d.path(), &q, 12 << 20, &sha256(&q), None);
        let got = got.unwrap();
        assert_eq!(got, (Format::Qcow2, img.len() as u64), "{extra:?}");
        let on_disk = std::fs::read(&p).unwrap();
        assert!(
            on_disk[..img.len()] == img[..],
            "qcow2 {extra:?} differs from its raw source"
        );
    }
}

#[test]
fn qcow2_refusals_leave_the_disk_untouched() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "8M"]);
    let child = d.path().join("child.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        "-F",
        "qcow2",
        child.to_str().unwrap(),
    ]);
    let ext = d.path().join("ext.qcow2");
    let data = d.path().join("ext.data");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data.display()),
        ext.to_str().unwrap(),
        "8M",
    ]);
    let big = qcow2_of(d.path(), &raw_image(8 << 20), &[]);
    let cases = [
        (std::fs::read(&child).unwrap(), None, "backing file"),
        (std::fs::read(&ext).unwrap(), None, "external data file"),
        (big.clone(), Some("raw"), "claims to be raw"),
        (big, None, "the image needs 8388608 bytes"),
    ];
    for (bytes, claimed, why) in cases {
        let (s, p, r) = serve_and_write(d.path(), &bytes, 4 << 20, &sha256(&bytes), claimed);
        let e = r.unwrap_err();
        assert!(matches!(e, DeployError::InvalidImage(_)), "{why}: {e:?}");
        assert!(e.to_string().contains(why), "{why}: {e}");
        assert!(
            std::fs::read(&p).unwrap().iter().all(|b| *b == 0xAB),
            "{why}: disk touched"
        );
        assert_eq!(
            s.heads.lock().unwrap().len(),
            1,
            "{why}: refusals are not retried"
        );
    }
}

#[test]
fn a_wrong_checksum_is_retried_then_fails_and_wipes_the_boot_areas() {
    let d = tempfile::tempdir().unwrap();
    let img = raw_image(6 << 20);
    let (s, p, r) = serve_and_write(d.path(), &img, 16 << 20, &"0".repeat(64), None);
    let e = r.unwrap_err();
    assert!(matches!(e, DeployError::Checksum(_)), "{e:?}");
    assert!(
        e.to_string().contains("failed to verify against checksum"),
        "{e}"
    );
    assert_eq!(s.heads.lock().unwrap().len(), 2, "retried once");
    let on_disk = std::fs::read(&p).unwrap();
    assert!(
        on_disk[..1 << 20].iter().all(|b| *b == 0),
        "the partition table is gone"
    );
    assert_eq!(
        on_disk[2 << 20],
        img[2 << 20],
        "only the boot areas are wiped"
    );
}

#[test]
fn download_goes_through_the_proxy_with_the_authorization() {
    let d = tempfile::tempdir().unwrap();
    let img = raw_image(2 << 20);
    let s = serve(vec![("/disk.raw", img.clone())]);
    let (proxy, seen) = connect_proxy(s.url.clone());
    let info = json!({
        "proxies": {"http": proxy},
        "no_proxy": "elsewhere.test",
        "image_request_authorization": "QmVhcmVyIHNlY3JldA==",
    });
    let src = Source::from_image_info(info.as_object().unwrap()).unwrap();
    let p = disk(d.path(), "vda", 4 << 20);
    let t = Target::open(&p).unwrap();
    // The host name exists only for the proxy, which resolves nothing.
    write_url(
        &t,
        "http://images.invalid:8080/disk.raw",
        &sha256(&img),
        None,
        &src,
    )
    .unwrap();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["CONNECT images.invalid:8080 HTTP/1.1"]
    );
    let heads = s.heads.lock().unwrap();
    assert!(
        heads[0]
            .to_lowercase()
            .contains("authorization: bearer secret"),
        "{heads:?}"
    );
    assert_eq!(&std::fs::read(&p).unwrap()[..img.len()], &img[..]);
}

#[test]
fn a_4xx_is_final_and_a_5xx_is_retried() {
    let d = tempfile::tempdir().unwrap();
    let s = serve(vec![]);
    let p = disk(d.path(), "vda", 1 << 20);
    let t = Target::open(&p).unwrap();
    let fail =
        |url: &str| write_url(&t, url, &"0".repeat(64), None, &Source::default()).unwrap_err();
    let e = fail(&format!("{}/missing", s.url));
    assert!(e.to_string().contains("404"), "{e}");
    assert_eq!(s.heads.lock().unwrap().len(), 1);
    let e = fail(&format!("{}/fail500", s.url));
    assert!(
        e.to_string().contains("500") && e.to_string().contains("giving up"),
        "{e}"
    );
    assert_eq!(s.heads.lock().unwrap().len(), 3, "one retry after the 500");
    let e = fail("http://127.0.0.1:9/x");
    assert!(matches!(e, DeployError::Download(_)), "unreachable: {e:?}");
    assert!(std::fs::read(&p).unwrap().iter().all(|b| *b == 0xAB));
}

/// A fake root with one 5 GiB disk `vda` (a sparse file) and one small one.
fn fake_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for (name, bytes) in [("vda", 5u64 << 30), ("vdb", 1 << 30)] {
        let sys = root.join("sys/block").join(name);
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::write(sys.join("size"), format!("{}\n", bytes / 512)).unwrap();
        std::fs::write(sys.join("serial"), format!("SER-{name}\n")).unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        let f = std::fs::File::create(root.join("dev").join(name)).unwrap();
        f.set_len(bytes).unwrap();
    }
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        "ipa-image-download-connection-retries=0 ipa-image-download-connection-retry-interval=0\n",
    )
    .unwrap();
    root
}

fn config_iso() -> Vec<u8> {
    let mut v = vec![0u8; 48 * 2048];
    v[32768] = 1;
    v[32769..32774].copy_from_slice(b"CD001");
    v[32768 + 40..32768 + 72].copy_from_slice(format!("{:<32}", "config-2").as_bytes());
    v[40000..40009].copy_from_slice(b"meta_data");
    v
}

fn gzip_b64(b: &[u8]) -> String {
    use base64::Engine;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[test]
fn write_image_step_picks_the_disk_writes_and_adds_the_configdrive() {
    let d = tempfile::tempdir().unwrap();
    let root = fake_root(d.path());
    let img = raw_image(6 << 20);
    let s = serve(vec![("/disk.raw", img.clone())]);
    let node = json!({"instance_info": {}, "properties": {}});
    let args = json!({
        "image_info": {"id": "img", "urls": [format!("{}/disk.raw", s.url)], "disk_format": "raw",
                       "os_hash_algo": "sha256", "os_hash_value": sha256(&img)},
        "configdrive": gzip_b64(&config_iso()),
    });
    let w = write::write_image(
        &root,
        &Settings::default(),
        &node,
        args.as_object().unwrap(),
    )
    .unwrap();
    assert_eq!(w.device, "/dev/vda", "the smallest disk of at least 4 GiB");
    assert_eq!(w.disk_identifier, "0x00000000");
    let mut f = std::fs::File::open(root.join("dev/vda")).unwrap();
    let mut head = vec![0u8; img.len()];
    f.read_exact(&mut head).unwrap();
    assert!(head[..446] == img[..446] && head[512..] == img[512..]);
    let entry2 = &head[446 + 16..446 + 32];
    assert_eq!(entry2[4], 0x0c, "a DOS partition for the configdrive");
    let start = u32::from_le_bytes(entry2[8..12].try_into().unwrap()) as u64 * 512;
    let mut iso = vec![0u8; 48 * 2048];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut iso, start).unwrap();
    assert_eq!(iso, config_iso());
    assert!(start >= (5u64 << 30) - (65 << 20));
}

#[test]
fn write_image_step_refuses_a_malformed_configdrive_and_a_missing_disk() {
    let d = tempfile::tempdir().unwrap();
    let root = fake_root(d.path());
    let s = serve(vec![("/disk.raw", raw_image(2 << 20))]);
    let info =
        json!({"id": "img", "urls": [format!("{}/disk.raw", s.url)], "checksum": "a".repeat(64)});
    let run = |node: Value, cd: &str| {
        let args = json!({"image_info": info, "configdrive": cd});
        write::write_image(
            &root,
            &Settings::default(),
            &node,
            args.as_object().unwrap(),
        )
        .unwrap_err()
    };
    let e = run(json!({}), "not*base64");
    assert!(
        matches!(e, DeployError::Configdrive(_)) && e.to_string().contains("malformed configdrive"),
        "{e:?}"
    );
    let e = run(
        json!({"properties": {"root_device": {"serial": "nope"}}}),
        "",
    );
    assert!(
        matches!(e, DeployError::NoDevice(_)) && e.to_string().contains("root device hints"),
        "{e:?}"
    );
    assert!(s.heads.lock().unwrap().is_empty(), "nothing was downloaded");
    let mut f = std::fs::File::open(root.join("dev/vda")).unwrap();
    let mut head = vec![0u8; 1 << 20];
    f.read_exact(&mut head).unwrap();
    assert!(head.iter().all(|b| *b == 0));
}
