// The page and the widget, bundled from extension/src by esbuild (the panel is built by
// jupyter-builder from lib/). `--minify` for the wheel (the widget is always minified).
import { build } from 'esbuild';

const minify = process.argv.includes('--minify');
const common = {
  bundle: true,
  target: 'es2020',
  minify,
  logLevel: 'warning',
  legalComments: 'none'
};

await Promise.all([
  // /leaderboard: a classic script; plotly.js comes from the server's /static/plotly.min.js.
  build({
    ...common,
    entryPoints: ['extension/src/page.ts'],
    format: 'iife',
    outfile: 'crowdsource/static/leaderboard.js'
  }),
  // The anywidget module: `export default { render }`, plotly.js-basic inlined (lazy). Always
  // minified: the kernel sends it to the browser with every view of the widget.
  build({
    ...common,
    minify: true,
    entryPoints: ['extension/src/widget.ts'],
    format: 'esm',
    outfile: 'crowdsource/static/widget.js'
  })
]);
