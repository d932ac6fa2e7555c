/**
 * crowdsource JupyterLab extension: a side panel with competitions and live leaderboards.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { DEFAULT_SERVER_URL } from './api';
import { offerPlotly } from './charts';
import { resolveConnection } from './identity';
import { bundledPlotly, LeaderboardPanel } from './panel';

const PLUGIN_ID = 'crowdsource-jupyterlab:plugin';
const PANEL_ID = 'crowdsource-leaderboard';

export const CommandIDs = {
  open: 'crowdsource:open-leaderboard'
} as const;

const TROPHY_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
<path class="jp-icon3" fill="#616161" d="M19 5h-2V3H7v2H5c-1.1 0-2 .9-2 2v1c0 2.55 1.92 4.63 4.39 4.94A5.01 5.01 0 0 0 11 15.9V19H7v2h10v-2h-4v-3.1a5.01 5.01 0 0 0 3.61-2.96C19.08 12.63 21 10.55 21 8V7c0-1.1-.9-2-2-2zM5 8V7h2v3.82C5.84 10.4 5 9.3 5 8zm14 0c0 1.3-.84 2.4-2 2.82V7h2v1z"/>
</svg>`;

export const trophyIcon = new LabIcon({
  name: 'crowdsource:trophy',
  svgstr: TROPHY_SVG
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Competitions and live leaderboards from a crowdsource server.',
  autoStart: true,
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    // The notebook widget draws with this copy when it can: a chunk loaded by a script tag,
    // so after a page reload V8 compiles it from its code cache. The widget's own copy is in
    // the module the kernel sends, compiled afresh on every load: about 0.3 s more a reload
    // (bench/widget_reload.py).
    offerPlotly(bundledPlotly);
    const panel = new LeaderboardPanel();
    panel.id = PANEL_ID;
    panel.title.icon = trophyIcon;
    panel.title.caption = 'Crowdsource leaderboards';
    app.shell.add(panel, 'right', { rank: 900 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open Crowdsource Leaderboard',
      caption:
        'Show competitions and live leaderboards from the crowdsource server',
      icon: trophyIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    palette?.addItem({ command: CommandIDs.open, category: 'Crowdsource' });

    // The saved identity first, else the settings; asked again each time the panel is
    // shown, so a `crowdsource register` made meanwhile is picked up without a reload.
    let read = (): [string, string, boolean] => [DEFAULT_SERVER_URL, '', false];
    let asked = 0;
    const connect = () => {
      const seq = ++asked;
      void resolveConnection(...read()).then(c => {
        if (seq === asked) {
          panel.configure(c.serverUrl, c.token, c.source);
        }
      });
    };
    const start = () => {
      panel.onShow = connect;
      connect();
    };
    if (!settingRegistry) {
      start();
      return;
    }
    settingRegistry
      .load(PLUGIN_ID)
      .then(settings => {
        read = () => [
          String(settings.get('serverUrl').composite ?? DEFAULT_SERVER_URL),
          String(settings.get('token').composite ?? ''),
          settings.get('serverUrl').user !== undefined
        ];
        start();
        settings.changed.connect(connect);
      })
      .catch(reason => {
        console.error('crowdsource: could not load settings', reason);
        start();
      });
  }
};

export default plugin;
