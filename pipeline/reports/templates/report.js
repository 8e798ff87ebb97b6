(function(){
  const main=document.getElementById('cards');
  const cards=Array.from(main.querySelectorAll('article.card'));
  const num=v=>v===''?Infinity:Number(v);
  const sorters={
    row:(a,b)=>a.dataset.run.localeCompare(b.dataset.run)||num(a.dataset.row)-num(b.dataset.row),
    loss:(a,b)=>num(a.dataset.loss)-num(b.dataset.loss),
    seconds:(a,b)=>num(a.dataset.seconds)-num(b.dataset.seconds),
    status:(a,b)=>a.dataset.status.localeCompare(b.dataset.status)};
  function arrange(){
    const group=document.getElementById('group').value;
    const sort=document.getElementById('sort').value;
    const shown=new Set(Array.from(document.querySelectorAll('input[data-status]'))
      .filter(box=>box.checked).map(box=>box.dataset.status));
    const ordered=cards.slice().sort((a,b)=>sorters[sort](a,b)||sorters.row(a,b));
    const groups=new Map();
    for(const card of ordered){
      card.hidden=!shown.has(card.dataset.status);
      const key=group?card.dataset[group]:'';
      if(!groups.has(key))groups.set(key,[]);
      groups.get(key).push(card);
    }
    main.replaceChildren();
    for(const key of Array.from(groups.keys()).sort()){
      const section=document.createElement('section');
      section.className='group';
      const visible=groups.get(key).filter(card=>!card.hidden).length;
      if(group){
        const heading=document.createElement('h2');
        heading.textContent=key+' \u2014 '+visible+' of '+groups.get(key).length+' rows shown';
        section.appendChild(heading);
      }
      const grid=document.createElement('div');
      grid.className='grid';
      grid.append(...groups.get(key));
      section.appendChild(grid);
      main.appendChild(section);
    }
  }
  document.querySelectorAll('.toolbar select,.toolbar input').forEach(el=>el.addEventListener('change',arrange));
  arrange();
})();
