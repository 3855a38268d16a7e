// Loads data.json and the image, then marks the page: a headless browser can
// check from its side that every subresource arrived (look for "all loaded").
(async () => {
  const status = document.getElementById('status');
  try {
    const data = await (await fetch('data.json')).json();
    const img = document.querySelector('img');
    if (!img.complete) await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; });
    const css = getComputedStyle(document.querySelector('h1')).color === 'rgb(11, 83, 148)';
    if (!css || img.naturalWidth !== 64) throw new Error('stylesheet or image missing');
    status.textContent = `all loaded: ${data.engine} serves ${data.files.length} files`;
    status.className = 'ok';
  } catch (e) {
    status.textContent = `failed: ${e}`;
  }
})();
