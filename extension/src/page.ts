/**
 * The server's /leaderboard page (bundled to crowdsource/static/leaderboard.js): the shared
 * competitions list and live board, plotly.js from the server's /static/plotly.min.js.
 */
import { CrowdsourceApi } from './api';
import { LeaderboardApp } from './app';
import { IPlotly, PlotlyLoader } from './charts';

// The page lives at <prefix>/leaderboard(.html); the API at <prefix>/api/v1.
const prefix = window.location.pathname.replace(
  /\/leaderboard(\.html)?\/?$/,
  ''
);

let plotly: Promise<IPlotly> | null = null;

/** plotly.js from this server, added after the table is on the page. */
const serverPlotly: PlotlyLoader = () => {
  plotly ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = `${prefix}/static/plotly.min.js`;
    script.onload = () => resolve((window as any).Plotly as IPlotly);
    script.onerror = () => reject(new Error('plotly.js did not load'));
    document.head.appendChild(script);
  });
  return plotly;
};

/** The competition the URL names (`/leaderboard#12`), if any. */
function hashId(): number | null {
  const id = Number(window.location.hash.slice(1));
  return Number.isInteger(id) && id > 0 ? id : null;
}

function main(): void {
  const app = new LeaderboardApp({
    plotly: serverPlotly,
    onSelect: id => window.history.replaceState(null, '', `#${id}`)
  });
  document.getElementById('cs-live')?.replaceWith(app.live);
  document.getElementById('cs-app')!.appendChild(app.node);
  window.addEventListener('hashchange', () => app.select(hashId()));
  window.addEventListener('resize', () => app.resized());
  app.select(hashId());
  app.connect(new CrowdsourceApi(window.location.origin + prefix));
}

main();
