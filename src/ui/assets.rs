//! The web UI's CSS and JavaScript, embedded in the binary (no build step, no CDN, works
//! offline) and served under content-hashed names: `/assets/app.<hash>.css`. A hashed name never
//! changes meaning, so it is cached for a year (`immutable`) and revalidated by `ETag`.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// `app.css`
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// The first 12 hex digits of the bytes' SHA-256.
    pub hash: String,
    /// `app.<hash>.css`: the name pages link to.
    pub hashed_name: String,
}

impl Asset {
    fn new(name: &'static str, bytes: &'static [u8], content_type: &'static str) -> Asset {
        let hash: String = hex::encode(Sha256::digest(bytes))[..12].to_owned();
        let hashed_name = match name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
            None => format!("{name}.{hash}"),
        };
        Asset {
            name,
            bytes,
            content_type,
            hash,
            hashed_name,
        }
    }

    /// The path pages link to: `/assets/app.<hash>.css`.
    pub fn href(&self) -> String {
        format!("/assets/{}", self.hashed_name)
    }
}

/// Every embedded asset.
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new(
            "app.css",
            include_bytes!("../../assets/app.css"),
            "text/css; charset=utf-8",
        ),
        Asset::new(
            "app.js",
            include_bytes!("../../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        Asset::new(
            "favicon.svg",
            include_bytes!("../../assets/favicon.svg"),
            "image/svg+xml",
        ),
    ]
});

/// The asset named `name` (`app.css`).
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The link to the asset named `name`, for templates (`/assets/app.<hash>.css`).
pub fn href(name: &str) -> String {
    asset(name).map_or_else(|| format!("/assets/{name}"), Asset::href)
}

/// `GET /assets/{file}`: an embedded asset by its hashed name (or its plain name, served
/// with a short cache, for hand-written links).
pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let found = ASSETS
        .iter()
        .map(|a| (a, a.hashed_name == file))
        .find(|(a, hashed)| *hashed || a.name == file);
    let Some((asset, hashed)) = found else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let etag = format!("\"{}\"", asset.hash);
    let cache = if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_carry_the_content_hash() {
        let css = asset("app.css").expect("app.css");
        assert_eq!(css.hash.len(), 12);
        assert_eq!(css.hashed_name, format!("app.{}.css", css.hash));
        assert_eq!(
            href("app.js"),
            format!("/assets/app.{}.js", asset("app.js").expect("js").hash)
        );
    }

    #[tokio::test]
    async fn serves_by_hashed_name_with_long_cache_and_etag() {
        let css = asset("app.css").expect("app.css");
        let resp = serve(Path(css.hashed_name.clone()), HeaderMap::new()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"{}\"", css.hash)).expect("etag"),
        );
        let resp = serve(Path(css.hashed_name.clone()), h).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        let resp = serve(Path("nope.css".into()), HeaderMap::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
