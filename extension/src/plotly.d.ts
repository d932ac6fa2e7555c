/** plotly.js-basic-dist-min ships no types: the part used is `IPlotly` (charts.ts). */
declare module 'plotly.js-basic-dist-min';
