// Render every formula the Markdown marked (class "math": "inline", else display) with KaTeX, in the page.
// A formula KaTeX cannot parse keeps its TeX, gets class "math-error" and its message as a tooltip,
// and is listed in window.editionMathErrors (the browser test reads it).
window.editionMathErrors = [];
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".math").forEach(function (element) {
    var tex = element.textContent;
    try {
      katex.render(tex, element, {displayMode: !element.classList.contains("inline"), throwOnError: true});
    } catch (error) {
      element.classList.add("math-error");
      element.title = String(error.message || error);
      window.editionMathErrors.push(tex + " : " + element.title);
    }
  });
  document.body.setAttribute("data-math", "done");
});
