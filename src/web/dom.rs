//! Small helpers over the page's DOM: reading and setting fields, status and log lines, click
//! handlers, downloads, yielding to the browser.

use std::future::Future;
use std::pin::Pin;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, Document, HtmlAnchorElement, HtmlElement, HtmlInputElement,
    HtmlSelectElement, HtmlTextAreaElement, Url,
};

use crate::error::{Error, Result};

/// The page's document.
///
/// # Panics
/// Outside a page (no `window.document`), which the wasm build never runs in.
pub fn doc() -> Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a page with a document")
}

/// The element `id`, if the page has it.
pub fn el(id: &str) -> Option<HtmlElement> {
    doc().get_element_by_id(id).and_then(|e| e.dyn_into().ok())
}

/// Sets the text of element `id`.
pub fn set_text(id: &str, text: &str) {
    if let Some(e) = el(id) {
        e.set_text_content(Some(text));
    }
}

/// Sets the HTML of element `id` (callers escape text with [`esc`]).
pub fn set_html(id: &str, html: &str) {
    if let Some(e) = el(id) {
        e.set_inner_html(html);
    }
}

/// The value of the input, select or text area `id` (empty when absent).
pub fn input(id: &str) -> String {
    doc()
        .get_element_by_id(id)
        .and_then(|e| {
            e.clone()
                .dyn_into::<HtmlInputElement>()
                .map(|i| i.value())
                .ok()
                .or_else(|| {
                    e.clone()
                        .dyn_into::<HtmlSelectElement>()
                        .ok()
                        .map(|s| s.value())
                })
                .or_else(|| e.dyn_into::<HtmlTextAreaElement>().ok().map(|t| t.value()))
        })
        .unwrap_or_default()
}

/// Sets the value of the input or select `id`.
pub fn set_input(id: &str, v: &str) {
    if let Some(e) = doc().get_element_by_id(id) {
        if let Ok(i) = e.clone().dyn_into::<HtmlInputElement>() {
            i.set_value(v);
        } else if let Ok(s) = e.clone().dyn_into::<HtmlSelectElement>() {
            s.set_value(v);
        } else if let Ok(t) = e.dyn_into::<HtmlTextAreaElement>() {
            t.set_value(v);
        }
    }
}

/// The number in field `id` (`what` names it in the error).
///
/// # Errors
/// [`Error::Invalid`] when the field does not hold a number.
pub fn num<T: std::str::FromStr>(id: &str, what: &str) -> Result<T> {
    input(id)
        .trim()
        .parse()
        .map_err(|_| Error::Invalid(format!("{what}: `{}` is not a valid number", input(id))))
}

/// The number in field `id`, or `None` when it is empty.
///
/// # Errors
/// As [`num`].
pub fn opt_num(id: &str, what: &str) -> Result<Option<usize>> {
    if input(id).trim().is_empty() {
        Ok(None)
    } else {
        num(id, what).map(Some)
    }
}

/// The real number in field `id`, or `None` when it is empty.
///
/// # Errors
/// As [`num`].
pub fn opt_float(id: &str, what: &str) -> Result<Option<f64>> {
    if input(id).trim().is_empty() {
        Ok(None)
    } else {
        num(id, what).map(Some)
    }
}

/// The status line.
pub fn status(msg: &str) {
    set_text("status", msg);
}

/// A line on the console and at the top of the page's log.
pub fn log(msg: &str) {
    web_sys::console::log_1(&msg.into());
    if let Some(e) = el("log")
        && let Ok(line) = doc().create_element("div")
    {
        line.set_text_content(Some(msg));
        let _ = e.prepend_with_node_1(&line);
    }
}

/// Monotonic time in seconds (`performance.now()`).
pub fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now() / 1000.0)
}

/// Resolves after the browser had a chance to run other tasks (a `setTimeout(0)`).
pub fn yield_now() -> Pin<Box<dyn Future<Output = ()>>> {
    let p = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    Box::pin(async move {
        let _ = JsFuture::from(p).await;
    })
}

/// Runs `f` on every click of element `id`.
pub fn on_click(id: &str, f: impl Fn() + 'static) {
    if let Some(e) = el(id) {
        let c = Closure::<dyn Fn()>::new(f);
        e.set_onclick(Some(c.as_ref().unchecked_ref()));
        c.forget();
    }
}

/// Runs `f` on every `change` event of element `id` (inputs, selects, radio buttons).
pub fn on_change(id: &str, f: impl Fn() + 'static) {
    if let Some(e) = el(id) {
        let c = Closure::<dyn Fn()>::new(f);
        let _ = e.add_event_listener_with_callback("change", c.as_ref().unchecked_ref());
        c.forget();
    }
}

/// Offers `bytes` as a download named `name`.
///
/// # Errors
/// [`Error::Load`] when the browser refuses to make the file.
pub fn download(name: &str, bytes: &[u8], mime: &str) -> Result<()> {
    let fail = |e: JsValue| Error::load(name, format!("download failed: {e:?}"));
    let arr = Array::new();
    arr.push(&Uint8Array::from(bytes).into());
    let opts = BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = Blob::new_with_u8_array_sequence_and_options(&arr, &opts).map_err(fail)?;
    let url = Url::create_object_url_with_blob(&blob).map_err(fail)?;
    let a: HtmlAnchorElement = doc()
        .create_element("a")
        .map_err(fail)?
        .dyn_into()
        .map_err(|_| Error::load(name, "no anchor element"))?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    let _ = Url::revoke_object_url(&url);
    Ok(())
}

/// `s` with `&`, `<`, `>` escaped for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Shows an error in the status line, the log and the error field.
pub fn report(r: Result<()>) {
    if let Err(e) = r {
        log(&format!("error: {e}"));
        // A lost GPU device is said in the page's words (reload to go on, what is kept).
        match crate::error::device_failure_message(&e.to_string()) {
            Some(msg) => {
                status("the GPU device failed: reload the page to train again");
                set_text("error", &msg);
            }
            None => {
                status(&format!("error: {e}"));
                set_text("error", &e.to_string());
            }
        }
    }
}
