"""The landing-page kit: embed.js, the no-JS form endpoint and the hosted form pages."""
