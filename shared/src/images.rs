//! Photo processing: nothing a client says about a file is trusted.
//!
//! The bytes must decode as JPEG, PNG, WebP or GIF (sniffed from content,
//! not from the filename or Content-Type), within dimension and memory
//! limits. The image is then downscaled to at most [`MAX_EDGE`] pixels on
//! its long side and re-encoded as a JPEG, which drops anything hidden in
//! the original file (metadata, scripts in polyglot files, extra frames).
//! The stored name is the SHA-256 of the re-encoded bytes, so equal photos
//! share one file and a name can never contain a path.

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

/// Longest edge of a stored photo, in pixels.
pub const MAX_EDGE: u32 = 1080;
/// Largest input accepted, in pixels per edge.
pub const MAX_INPUT_EDGE: u32 = 8192;
/// Largest input accepted, in pixels in all (width × height), checked from
/// the header before anything is decoded: 24 megapixels, a 6000 × 4000
/// camera photo. Each side alone is not enough: a single-colour PNG of
/// 8192 × 8192 is ~200 kB on the wire and ~200 MiB decoded.
pub const MAX_PIXELS: u64 = 24_000_000;
/// Decoder memory bound per image (bytes): 24 megapixels of 8-bit RGBA fit
/// (96 MiB); a deeper format that would need more fails as too large.
/// [`crate::image_pool`] runs a fixed number of decodes at once, so this
/// bounds the process's image memory.
pub const MAX_DECODE_ALLOC: u64 = 128 * 1024 * 1024;
const JPEG_QUALITY: u8 = 85;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the file is not a JPEG, PNG, WebP or GIF image")]
    NotAnImage,
    #[error("the image is damaged or truncated")]
    Corrupt,
    #[error("the image is larger than 8192 pixels on a side or 24 megapixels in all")]
    TooLarge,
}

impl ImageError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnImage => "not_an_image",
            Self::Corrupt => "invalid_image",
            Self::TooLarge => "image_too_large",
        }
    }
}

/// A re-encoded photo ready to be stored.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// `<sha256 hex>.jpg`
    pub file_name: String,
}

/// Decodes, bounds, downscales and re-encodes. CPU-heavy: run it on a
/// blocking thread.
pub fn process(bytes: &[u8]) -> Result<ProcessedImage, ImageError> {
    let format = probe(bytes)?.format;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_EDGE);
    limits.max_image_height = Some(MAX_INPUT_EDGE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooLarge,
        _ => ImageError::Corrupt,
    })?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(ImageError::Corrupt);
    }
    Ok(encode(&shrink(decoded)))
}

/// The format of `bytes`, if it is one Minigram accepts.
fn accepted_format(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif)) => {
            Ok(f)
        }
        _ => Err(ImageError::NotAnImage),
    }
}

/// What an image's header says.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// The cheap check every upload gets before any pixel is decoded: a
/// supported format whose header declares a size within the limits (each
/// side, and the pixel count). A queued upload gets only this in its
/// request; the full decode happens in the worker.
pub fn probe(bytes: &[u8]) -> Result<Header, ImageError> {
    let format = accepted_format(bytes)?;
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|_| ImageError::Corrupt)?;
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt);
    }
    if width > MAX_INPUT_EDGE
        || height > MAX_INPUT_EDGE
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(ImageError::TooLarge);
    }
    Ok(Header {
        format,
        width,
        height,
    })
}

/// The names of a queued upload: the raw bytes wait in `incoming/<sha256
/// of the upload>.raw`; the worker writes the processed photo as
/// `<same sha256>.jpg`, the name the photo row holds from the start.
pub fn queued_names(raw: &[u8]) -> (String, String) {
    let final_name = format!("{}.jpg", hex::encode(Sha256::digest(raw)));
    (raw_name_of(&final_name), final_name)
}

/// The raw upload's name for a queued photo's final name.
fn raw_name_of(final_name: &str) -> String {
    format!("{}.raw", final_name.trim_end_matches(".jpg"))
}

/// Where queued uploads wait for the worker.
pub fn incoming_dir(uploads: &Path) -> PathBuf {
    uploads.join("incoming")
}

/// What the background worker made of a queued upload.
#[derive(Debug)]
pub enum QueuedOutcome {
    /// Processed and stored under the final name.
    Ready { width: u32, height: u32 },
    /// Not a decodable image after all (the header looked fine).
    Failed(ImageError),
}

/// The worker's job for one queued upload: decode, bound, downscale and
/// re-encode its raw bytes in `incoming/`, store the result durably as
/// `final_name`, then remove the raw file. Idempotent: a photo already
/// processed (by another worker, or before a crash) is reported ready
/// again. CPU-heavy.
pub fn process_queued(uploads: &Path, final_name: &str) -> std::io::Result<QueuedOutcome> {
    let raw_path = incoming_dir(uploads).join(raw_name_of(final_name));
    let final_path = uploads.join(final_name);
    let raw = match std::fs::read(&raw_path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && final_path.exists() => {
            let done = std::fs::read(&final_path)?;
            return Ok(match probe(&done) {
                Ok(h) => QueuedOutcome::Ready {
                    width: h.width,
                    height: h.height,
                },
                Err(e) => QueuedOutcome::Failed(e),
            });
        }
        // Neither the upload nor its result exists (removed by hand): the
        // photo can never be made; retrying forever would not help.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(QueuedOutcome::Failed(ImageError::Corrupt));
        }
        Err(e) => return Err(e),
    };
    let outcome = match process(&raw) {
        Ok(mut image) => {
            image.file_name = final_name.to_owned();
            store_file(uploads, &image)?;
            QueuedOutcome::Ready {
                width: image.width,
                height: image.height,
            }
        }
        Err(e) => QueuedOutcome::Failed(e),
    };
    match std::fs::remove_file(&raw_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(outcome)
}

fn shrink(img: DynamicImage) -> DynamicImage {
    if img.width().max(img.height()) <= MAX_EDGE {
        img
    } else {
        // `thumbnail` is a fast box-filter downscale that keeps the aspect ratio.
        img.thumbnail(MAX_EDGE, MAX_EDGE)
    }
}

/// Encodes as JPEG and names the result by its content hash.
pub fn encode(img: &DynamicImage) -> ProcessedImage {
    let rgb = img.to_rgb8();
    let mut jpeg = Vec::with_capacity(32 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&rgb)
        .expect("encoding an RGB8 buffer into memory cannot fail");
    let file_name = format!("{}.jpg", hex::encode(Sha256::digest(&jpeg)));
    ProcessedImage {
        width: rgb.width(),
        height: rgb.height(),
        jpeg,
        file_name,
    }
}

/// Is `name` one we made (`<64 hex>.jpg`)? Anything else is not served.
pub fn is_stored_name(name: &str) -> bool {
    name.len() == 68
        && name.ends_with(".jpg")
        && name[..64]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Writes the image durably: to a temporary file, fsync, rename, fsync the
/// directory. A photo row is only committed after this returns, so an
/// acknowledged upload survives a crash with its file.
pub fn store_file(dir: &Path, image: &ProcessedImage) -> std::io::Result<PathBuf> {
    write_durably(dir, &image.file_name, &image.jpeg)
}

/// Writes `bytes` as `dir/name` durably (temporary file, fsync, rename,
/// fsync of the directory). Names are content-addressed: an existing file
/// already holds the same bytes. A failure leaves no temporary file behind
/// (a crash may: [`sweep_temporary_files`] removes those at start).
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(path); // content-addressed: same name, same bytes
    }
    // Unique per call: concurrent uploads of the same picture (same name)
    // must not share a temporary file.
    let tmp = dir.join(format!(".{name}.{:016x}{TEMPORARY}", rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// How temporary upload files end (`.<name>.<random>.tmp`).
const TEMPORARY: &str = ".tmp";

/// Removes temporary files a crash left in the uploads directory and its
/// `incoming/`; returns how many. Run at start, before anything writes.
pub fn sweep_temporary_files(uploads: &Path) -> usize {
    let mut removed = 0;
    for dir in [uploads.to_owned(), incoming_dir(uploads)] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                && name.ends_with(TEMPORARY)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// A generated picture for seeding and tests: a colour gradient with a few
/// bands, deterministic in `seed`.
pub fn generated(seed: u64, width: u32, height: u32) -> DynamicImage {
    let r0 = (seed.wrapping_mul(97) % 256) as u8;
    let g0 = (seed.wrapping_mul(57) % 256) as u8;
    let b0 = (seed.wrapping_mul(31) % 256) as u8;
    let bands = 2 + (seed % 5) as u32;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let band = (x * bands / width.max(1)) as u8;
        image::Rgb([
            r0.wrapping_add((x * 255 / width.max(1)) as u8),
            g0.wrapping_add((y * 255 / height.max(1)) as u8),
            b0.wrapping_add(band.wrapping_mul(40)),
        ])
    });
    DynamicImage::ImageRgb8(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's job: processed once, idempotent when run again, and
    /// a photo whose upload is gone ends failed instead of retrying forever.
    #[test]
    fn process_queued_is_idempotent_and_ends() {
        let dir = std::env::temp_dir().join(format!("minigram-queued-{}", rand::random::<u64>()));
        let incoming = incoming_dir(&dir);
        std::fs::create_dir_all(&incoming).unwrap();
        let raw = png(1600, 1200);
        let (raw_name, final_name) = queued_names(&raw);
        write_durably(&incoming, &raw_name, &raw).unwrap();
        for _ in 0..2 {
            match process_queued(&dir, &final_name).unwrap() {
                QueuedOutcome::Ready { width, height } => assert_eq!((width, height), (1080, 810)),
                other => panic!("{other:?}"),
            }
            assert!(dir.join(&final_name).exists() && !incoming.join(&raw_name).exists());
        }
        let (_, gone) = queued_names(b"never stored");
        assert!(matches!(
            process_queued(&dir, &gone).unwrap(),
            QueuedOutcome::Failed(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        generated(7, w, h)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn png_is_reencoded_as_jpeg() {
        let p = process(&png(40, 30)).unwrap();
        assert_eq!((p.width, p.height), (40, 30));
        assert_eq!(&p.jpeg[..3], &[0xFF, 0xD8, 0xFF]);
        assert!(is_stored_name(&p.file_name));
    }

    #[test]
    fn big_images_are_downscaled_keeping_aspect() {
        let p = process(&png(2160, 1080)).unwrap();
        assert_eq!((p.width, p.height), (1080, 540));
    }

    #[test]
    fn rejects_text_truncated_and_empty() {
        assert_eq!(
            process(b"hello, I am a text file").unwrap_err(),
            ImageError::NotAnImage
        );
        assert_eq!(process(b"").unwrap_err(), ImageError::NotAnImage);
        let full = png(64, 64);
        assert_eq!(
            process(&full[..full.len() / 2]).unwrap_err(),
            ImageError::Corrupt
        );
    }

    #[test]
    fn rejects_huge_dimensions_without_allocating_them() {
        // A valid PNG header claiming 100000 x 100000 pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = process(&bomb).unwrap_err();
        assert!(
            matches!(err, ImageError::TooLarge | ImageError::Corrupt),
            "{err:?}"
        );
        // A genuine PNG 9000 pixels wide.
        assert_eq!(process(&png(9000, 2)).unwrap_err(), ImageError::TooLarge);
    }

    /// A small file whose pixels would be huge is refused from its header,
    /// before a decode: 5000 × 5000 is within each side's limit but over
    /// the pixel budget; 6000 × 4000 is exactly within it.
    #[test]
    fn the_pixel_budget_is_checked_from_the_header() {
        let flat = |w, h| {
            let mut out = Vec::new();
            DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
                .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .unwrap();
            out
        };
        let over = flat(5000, 5000);
        assert!(over.len() < 200_000, "small on the wire: {}", over.len());
        assert_eq!(probe(&over).unwrap_err(), ImageError::TooLarge);
        assert_eq!(process(&over).unwrap_err(), ImageError::TooLarge);
        let h = probe(&flat(6000, 4000)).unwrap();
        assert_eq!((h.width, h.height), (6000, 4000));
    }

    #[test]
    fn concurrent_stores_of_one_image_all_succeed() {
        let dir = std::env::temp_dir().join(format!("minigram-store-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = encode(&generated(1, 16, 16));
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| store_file(&dir, &img).unwrap());
            }
        });
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "one file, no temporary left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every input ends in a stored JPEG within bounds or one of the three
    /// 4xx errors: never a panic, never a huge allocation, never a hang.
    fn bounded(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        let started = std::time::Instant::now();
        let result = process(bytes);
        // A hang guard, not a benchmark: the worst legal input (8192² px)
        // decodes in well under this on the reference machine.
        proptest::prop_assert!(started.elapsed() < std::time::Duration::from_secs(20));
        if let Ok(p) = result {
            proptest::prop_assert!(
                p.width.max(p.height) <= MAX_EDGE && p.width > 0 && p.height > 0
            );
            proptest::prop_assert_eq!(&p.jpeg[..2], &[0xFF, 0xD8]);
        }
        Ok(())
    }

    fn encoded(format: ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let img = generated(5, w, h);
        let img = if format == ImageFormat::Jpeg {
            DynamicImage::ImageRgb8(img.to_rgb8())
        } else {
            img
        };
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_are_refused_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            bounded(&bytes)?;
        }

        /// Real images of each accepted format, truncated anywhere and with
        /// bytes overwritten anywhere (headers included).
        #[test]
        fn damaged_images_are_refused_cleanly(
            format in proptest::sample::select(vec![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::WebP]),
            w in 1u32..64, h in 1u32..64,
            cut in 0.0f64..1.0,
            flips in proptest::collection::vec((0.0f64..1.0, proptest::prelude::any::<u8>()), 0..8),
        ) {
            let mut bytes = encoded(format, w, h);
            for (at, value) in flips {
                let i = ((bytes.len() - 1) as f64 * at) as usize;
                bytes[i] = value;
            }
            let keep = ((bytes.len() as f64) * cut) as usize;
            bounded(&bytes[..keep.max(1)])?;
            bounded(&bytes)?;
        }

        /// A GIF whose header claims any size up to 65535 × 65535: above
        /// the limit it is refused before the pixels are allocated.
        #[test]
        fn claimed_dimensions_are_bounded(w in 1u16.., h in 1u16..) {
            let mut gif = encoded(ImageFormat::Gif, 2, 2);
            gif[6..8].copy_from_slice(&w.to_le_bytes());
            gif[8..10].copy_from_slice(&h.to_le_bytes());
            let result = process(&gif);
            if u32::from(w) > MAX_INPUT_EDGE || u32::from(h) > MAX_INPUT_EDGE {
                proptest::prop_assert!(result.is_err(), "{}x{} accepted", w, h);
            }
            bounded(&gif)?;
        }
    }

    #[test]
    fn temporary_files_are_swept_and_photos_kept() {
        let dir = std::env::temp_dir().join(format!("minigram-sweep-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(incoming_dir(&dir)).unwrap();
        let kept = store_file(&dir, &encode(&generated(2, 8, 8))).unwrap();
        std::fs::write(dir.join(".a.jpg.0123.tmp"), b"half").unwrap();
        std::fs::write(incoming_dir(&dir).join(".b.raw.4567.tmp"), b"half").unwrap();
        assert_eq!(sweep_temporary_files(&dir), 2);
        assert!(kept.exists());
        assert_eq!(sweep_temporary_files(&dir), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_names_are_strict() {
        assert!(is_stored_name(&format!("{}.jpg", "a".repeat(64))));
        assert!(!is_stored_name("../etc/passwd"));
        assert!(!is_stored_name(&format!("{}.png", "a".repeat(64))));
        assert!(!is_stored_name(&format!("{}.jpg", "A".repeat(64))));
    }
}
