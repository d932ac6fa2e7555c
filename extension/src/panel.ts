/**
 * The JupyterLab side panel: the shared competitions list and live board, with the server
 * and identity the plugin resolves (saved by `crowdsource register`, else the settings).
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { CrowdsourceApi } from './api';
import { LeaderboardApp } from './app';
import { PlotlyLoader } from './charts';
import { el } from './dom';
import { IConnection } from './identity';

/** plotly.js-basic, bundled as a chunk of its own: loaded when the first chart is drawn. */
export const bundledPlotly: PlotlyLoader = () =>
  import('plotly.js-basic-dist-min').then(m => (m.default ?? m) as any);

export class LeaderboardPanel extends Widget {
  private api: CrowdsourceApi | null = null;
  private connected = false;
  private readonly app: LeaderboardApp;
  private readonly serverLabel = el('div', 'cs-server');
  /** Called each time the panel is shown (to ask again for the saved identity). */
  onShow: (() => void) | null = null;

  constructor(plotly: PlotlyLoader = bundledPlotly) {
    super();
    this.addClass('jp-CrowdsourcePanel');
    this.app = new LeaderboardApp({
      plotly,
      onRender: () => this.renderServer()
    });
    const header = el('header', 'cs-header', null, [
      el('div', 'cs-title-row', null, [
        el('h2', 'cs-title', 'Crowdsource'),
        this.app.live
      ]),
      this.serverLabel
    ]);
    this.node.append(header, this.app.node);
    this.app.render();
  }

  get serverUrl(): string | null {
    return this.api?.baseUrl ?? null;
  }

  /** Apply the server and token; reconnects when either changed. */
  configure(
    serverUrl: string,
    token: string,
    source: IConnection['source'] = 'settings'
  ): void {
    const api = new CrowdsourceApi(serverUrl, token);
    this.serverLabel.title =
      source === 'saved'
        ? 'Server and identity saved by `crowdsource register`'
        : 'Server URL (Settings › Crowdsource)';
    if (
      this.api &&
      api.baseUrl === this.api.baseUrl &&
      api.token === this.api.token
    ) {
      return;
    }
    this.api = api;
    this.app.tokenName =
      source === 'saved'
        ? 'token saved by `crowdsource register`'
        : 'token set in Settings › Crowdsource';
    this.connected = false;
    this.app.stop();
    if (this.isVisible) {
      this.start();
    }
    this.renderServer();
  }

  /** Connect once the panel is seen (a closed side bar opens no sockets). */
  private start(): void {
    if (this.api && !this.connected) {
      this.connected = true;
      this.app.connect(this.api);
    }
  }

  dispose(): void {
    this.app.stop();
    super.dispose();
  }

  /** Who we are by name only: the token itself is never put in the page. */
  private renderServer(): void {
    const me = this.app.me;
    this.serverLabel.textContent =
      (this.api?.baseUrl ?? '') + (me ? ` · as ${me.name}` : '');
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.start();
    }
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this.app.resized();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.onShow?.();
    this.start();
    this.app.resized();
  }
}
