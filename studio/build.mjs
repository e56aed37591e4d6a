// Builds the studio page into dist/ (git-ignored): the bundle of src/main.js with
// CodeMirror 6 from node_modules, and the page and style sheet copied as they are.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist/assets", { recursive: true });
await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outfile: "dist/assets/studio.js",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
copyFileSync("src/studio.css", "dist/assets/studio.css");
console.log("studio built into dist/");
