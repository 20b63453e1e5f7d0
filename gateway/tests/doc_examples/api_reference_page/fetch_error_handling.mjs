// The API Reference page's "JavaScript with Error Handling" example. Its `return` is only
// valid inside a function, so the documented lines run, unchanged, as the body of one.
(async () => {
try {
  const response = await fetch('https://api.aqta.ai/v1/chat/completions', {
    method: 'POST',
    headers: {
      'Authorisation': 'Bearer sk-aqta-YOUR_KEY',
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({
      model: 'gpt-4',
      messages: [{role: 'user', content: 'Hello!'}]
    })
  });

  if (!response.ok) {
    const error = await response.json();
    console.error('API Error:', error.error.message);
    return;
  }

  const data = await response.json();
  console.log(data.choices[0].message.content);
} catch (error) {
  console.error('Network Error:', error);
}
})();
