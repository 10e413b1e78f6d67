// The page's words: one catalogue per language (static/i18n/<lang>.json), looked up by key.
// The markup holds no text of its own: an element names its key in data-i18n (its text) or
// data-i18n-<attribute> (title, aria-label, placeholder), and applyCatalogue() fills them in.

export const LANGUAGES = ["en", "it", "es", "id"];

let catalogue = {};
let fallback = {};

// The catalogue of `lang` from the server (which falls back to English for an unknown one).
export async function loadCatalogue(lang, withToken) {
  const fetchJson = async (code) => {
    const response = await fetch(withToken(`/api/i18n/${code}`));
    if (!response.ok) throw new Error(`/api/i18n/${code}: HTTP ${response.status}`);
    return response.json();
  };
  if (!Object.keys(fallback).length) fallback = await fetchJson("en");
  catalogue = lang === "en" ? fallback : await fetchJson(lang);
  document.documentElement.lang = lang;
}

// t("descent.k", {k: 3, n: 62}) → "step 3 of 62": the text of that key, {k} and {n} filled in.
export function t(key, values = {}) {
  const text = catalogue[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? values[name] : whole));
}

const ATTRIBUTES = ["title", "aria-label", "placeholder", "alt"];

export function applyCatalogue(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const attribute of ATTRIBUTES) {
    for (const element of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      element.setAttribute(attribute, t(element.getAttribute(`data-i18n-${attribute}`)));
    }
  }
}
